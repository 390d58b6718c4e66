using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Tests;

/// <summary>What the operator refuses even when an old CRD let it through.</summary>
public sealed class SpecValidatorTests
{
    [Fact]
    public void Default_spec_is_valid()
    {
        Assert.Empty(SpecValidator.Validate(TestClusters.Minimal().Spec));
    }

    [Fact]
    public void Rebuild_and_snapshot_target_errors_name_their_fields()
    {
        var spec = TestClusters.Minimal().Spec;
        spec.Rebuild = new RebuildSpec { BandwidthPerNode = "lots", ConcurrentPerNode = 0 };
        spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = "ftp://backup", Bucket = "" };
        var errors = SpecValidator.Validate(spec);
        Assert.Contains(errors, e => e.Contains("spec.rebuild.bandwidthPerNode", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("spec.rebuild.concurrentPerNode", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("spec.snapshotTarget.endpoint", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("spec.snapshotTarget.bucket", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("Bad_Bucket", null, "spec.snapshotTarget.bucket 'Bad_Bucket' is not an S3 bucket name")]
    [InlineData("ab", null, "spec.snapshotTarget.bucket 'ab' is not an S3 bucket name")]
    [InlineData("backups", "eu west=", "spec.snapshotTarget.region 'eu west=' is not a region name")]
    public void Snapshot_target_bucket_and_region_the_masters_and_driver_would_refuse_are_refused_here(string bucket, string? region, string message)
    {
        // The masters get the target as --backup-target/--backup-region (web console) and would not start with these.
        var spec = TestClusters.Minimal().Spec;
        spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = "http://s3.local:9000", Bucket = bucket, Region = region };
        Assert.Contains(SpecValidator.Validate(spec), e => e.StartsWith(message, StringComparison.Ordinal));
        spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = "http://s3.local:9000", Bucket = "feitian-backups.a", Region = "oss-cn-hangzhou" };
        Assert.Empty(SpecValidator.Validate(spec));
    }

    [Fact]
    public void Node_lease_seconds_out_of_range_are_refused_and_failover_off_gives_the_plugins_no_lease()
    {
        var spec = TestClusters.Minimal().Spec;
        Assert.Equal(15, spec.NodeFailover.EffectiveLeaseSeconds());
        foreach (var bad in new[] { 0, 2, 3601 })
        {
            spec.NodeFailover = new NodeFailoverSpec { NodeLeaseSeconds = bad };
            Assert.Contains(SpecValidator.Validate(spec), e => e.Contains("spec.nodeFailover.nodeLeaseSeconds", StringComparison.Ordinal));
        }
        spec.NodeFailover = new NodeFailoverSpec { Enabled = false, NodeLeaseSeconds = 30 };
        Assert.Empty(SpecValidator.Validate(spec));
        Assert.Equal(0, spec.NodeFailover.EffectiveLeaseSeconds());
    }

    [Fact]
    public void Even_master_count_is_refused()
    {
        var spec = TestClusters.Minimal().Spec;
        spec.Masters.Replicas = 2;
        Assert.Contains(SpecValidator.Validate(spec), e => e.Contains("spec.masters.replicas", StringComparison.Ordinal));
    }
}
