using System.Security.Cryptography;
using FeitianK8s.Core.Backup;
using FeitianK8s.Csi.Controller;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// A VolumeSnapshotClass with <c>feitian.io/backup: "true"</c>: CreateSnapshot through a controller
/// whose snapshot target is a real S3 server (s3rver on loopback) takes the snapshot and backs it
/// up there in the background; the stored blocks are exactly the snapshot's data, and a retried
/// CreateSnapshot does not make a second backup.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class SnapshotBackupTests : IDisposable
{
    private static readonly TimeSpan BackupDeadline = TimeSpan.FromMinutes(3);
    private readonly CsiFixture _f;
    private readonly ITestOutputHelper _output;

    public SnapshotBackupTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
        _output = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private CsiClient C => _f.Client;

    [Fact]
    public async Task A_snapshot_of_a_backup_class_is_backed_up_to_the_snapshot_target_with_exactly_its_blocks()
    {
        await using var s3 = await S3rverProcess.StartAsync(_output, bucket: "csi-backups");
        // The driver reads credentials only from the environment, as in its pod.
        Environment.SetEnvironmentVariable(SnapshotTarget.AccessKeyIdEnv, S3rverProcess.AccessKey);
        Environment.SetEnvironmentVariable(SnapshotTarget.SecretAccessKeyEnv, S3rverProcess.SecretKey);
        var target = new SnapshotTarget { Endpoint = new Uri(s3.Endpoint), Bucket = s3.Bucket };
        await using var controller = await _f.StartDriverAsync("controller-with-target", _f.Root.Combine("controller-with-target"), mode: CsiMode.Controller, snapshotTarget: target);

        var capability = Csi.Block();
        var source = (await C.Controller.CreateVolumeAsync(Csi.Create("Backed-Up-SOURCE", 8 * Csi.MiB, capability))).Volume.VolumeId;
        var staging = _f.Root.Combine("kubelet", "plugins", "feitian.csi.k8s.io", "BACKUP-SRC", "globalmount");
        var device = _f.Root.Combine("kubelet", "pods", "POD-BACKUP", "volumes", "kubernetes.io~csi", "Backed-Up-SOURCE", "mount");
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = source, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = source, StagingTargetPath = staging, VolumeCapability = capability });
        await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = source, StagingTargetPath = staging, TargetPath = device, VolumeCapability = capability });
        var head = Csi.Pattern((int)Csi.MiB, seed: 61);
        var last = Csi.Pattern((int)Csi.MiB, seed: 62);
        Csi.WriteDevice(device, 0, head);
        Csi.WriteDevice(device, 7 * Csi.MiB, last);
        await C.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = source, TargetPath = device });
        await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = source, StagingTargetPath = staging });
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = source, NodeId = CsiFixture.NodeA });

        var request = new CreateSnapshotRequest { Name = "Backed-Up-SNAPSHOT", SourceVolumeId = source };
        request.Parameters[SnapshotParameters.BackupKey] = "true";
        var snapshot = (await controller.Client.Controller.CreateSnapshotAsync(request)).Snapshot;
        Assert.True(snapshot.ReadyToUse);

        using var store = BackupStore.Open(BackupTarget.Parse(BackupTarget.Scheme + s3.Bucket), new BackupStoreOptions(s3.Endpoint));
        var manifest = await WaitForBackupOfAsync(store, snapshot.SnapshotId);
        _output.WriteLine($"backup {manifest.Id} of {manifest.Snapshot}: {manifest.SizeBytes} bytes, {manifest.UploadedBytes} sent, blocks {string.Join(",", manifest.Blocks.Select(b => b.Index))}");
        Assert.Equal((source, 8 * Csi.MiB, BackupUploader.DefaultBlockSize), (manifest.Volume, manifest.SizeBytes, manifest.BlockSize));
        // The two written MiB are the only non-zero blocks (zero blocks are not stored), each stored under its own hash.
        Assert.Equal(new long[] { 0, 7 }, manifest.Blocks.Select(b => b.Index).Order());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(head)), manifest.Blocks.Single(b => b.Index == 0).Sha256);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(last)), manifest.Blocks.Single(b => b.Index == 7).Sha256);
        Assert.Equal(head, await store.TryGetAsync(store.Target.BlockKey(manifest.Blocks.Single(b => b.Index == 0).Sha256), CancellationToken.None));
        Assert.Equal(2 * Csi.MiB, manifest.UploadedBytes);

        // The snapshotter retrying CreateSnapshot gets the same snapshot and no second backup.
        var again = (await controller.Client.Controller.CreateSnapshotAsync(request)).Snapshot;
        Assert.Equal(snapshot.SnapshotId, again.SnapshotId);
        var (backups, unreadable) = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.Empty(unreadable);
        Assert.Single(backups, b => b.Snapshot == snapshot.SnapshotId);

        await controller.Client.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source });
    }

    private static async Task<BackupManifest> WaitForBackupOfAsync(BackupStore store, string snapshotId)
    {
        var deadline = DateTime.UtcNow + BackupDeadline;
        while (true)
        {
            var (backups, _) = await new BackupCatalog(store).ListAsync(CancellationToken.None);
            if (backups.FirstOrDefault(b => b.Snapshot == snapshotId) is { } done)
                return done;
            Assert.True(DateTime.UtcNow < deadline, $"no backup of snapshot {snapshotId} appeared in the target within {BackupDeadline}");
            await Task.Delay(250);
        }
    }
}
