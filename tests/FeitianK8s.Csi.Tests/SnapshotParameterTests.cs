using FeitianK8s.Csi.Controller;
using Grpc.Core;

namespace FeitianK8s.Csi.Tests;

/// <summary>VolumeSnapshotClass parameters and the backup preconditions, without a cluster.</summary>
public sealed class SnapshotParameterTests
{
    private static readonly SnapshotTarget Target = new() { Endpoint = new Uri("http://127.0.0.1:4569"), Bucket = "feitian-backups" };

    [Fact]
    public void Backup_parameter_is_parsed_the_snapshotters_keys_are_ignored_and_others_refused()
    {
        Assert.Equal(SnapshotParameters.None, SnapshotParameters.Parse(new Dictionary<string, string>()));
        var parsed = SnapshotParameters.Parse(new Dictionary<string, string>
        {
            [SnapshotParameters.BackupKey] = "true",
            ["csi.storage.k8s.io/volumesnapshot/name"] = "data-monday",
            ["csi.storage.k8s.io/volumesnapshotcontent/name"] = "snapcontent-1",
        });
        Assert.True(parsed.Backup);
        // The operator's backup VolumeSnapshotClass names the key the driver parses.
        Assert.Equal(SnapshotParameters.BackupKey, FeitianK8s.Operator.Desired.StorageClassBuilder.BackupParameter);
        Assert.Equal("true", parsed.ToLabels()[SnapshotParameters.BackupLabel]);
        Assert.Empty(SnapshotParameters.None.ToLabels());
        var bad = Assert.Throws<RpcException>(() => SnapshotParameters.Parse(new Dictionary<string, string> { [SnapshotParameters.BackupKey] = "yes" }));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        var unknown = Assert.Throws<RpcException>(() => SnapshotParameters.Parse(new Dictionary<string, string> { ["feitian.io/backup-target"] = "s3://x" }));
        Assert.Equal(StatusCode.InvalidArgument, unknown.StatusCode);
        Assert.Contains("feitian.io/backup-target", unknown.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void A_backup_needs_a_snapshot_target_and_a_backup_engine_else_it_is_refused_before_the_snapshot()
    {
        var backups = new UnavailableSnapshotBackups();
        Assert.Null(SnapshotBackupRules.Require(SnapshotParameters.None, null, backups, "Plain-SNAP"));
        var noTarget = Assert.Throws<RpcException>(() => SnapshotBackupRules.Require(new SnapshotParameters(Backup: true), null, backups, "Backup-SNAP"));
        Assert.Equal(StatusCode.FailedPrecondition, noTarget.StatusCode);
        Assert.Contains("spec.snapshotTarget", noTarget.Status.Detail, StringComparison.Ordinal);
        var noEngine = Assert.Throws<RpcException>(() => SnapshotBackupRules.Require(new SnapshotParameters(Backup: true), Target, backups, "Backup-SNAP"));
        Assert.Equal(StatusCode.FailedPrecondition, noEngine.StatusCode);
        Assert.Contains("not available", noEngine.Status.Detail, StringComparison.Ordinal);
        Assert.Same(Target, SnapshotBackupRules.Require(new SnapshotParameters(Backup: true), Target, new FakeReadyBackups(), "Backup-SNAP"));
    }

    /// <summary>A backup engine that accepts every backup, to check the rules let a ready one through (the real one is tested in SnapshotBackupTests).</summary>
    private sealed class FakeReadyBackups : ISnapshotBackups
    {
        public string? Unavailability => null;

        public Task StartAsync(Core.Raf.SnapshotRecord snapshot, SnapshotTarget target, CancellationToken ct) => Task.CompletedTask;
    }
}
