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

    [Fact]
    public void Even_master_count_is_refused()
    {
        var spec = TestClusters.Minimal().Spec;
        spec.Masters.Replicas = 2;
        Assert.Contains(SpecValidator.Validate(spec), e => e.Contains("spec.masters.replicas", StringComparison.Ordinal));
    }
}
