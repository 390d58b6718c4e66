using FeitianK8s.Csi.Controller;
using FeitianK8s.Proto.Csi;
using Grpc.Core;
using ControllerRpc = FeitianK8s.Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type;
using MasterApi = FeitianK8s.Proto.Master;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// The CSI spec's rules (as csi-sanity checks them) for the snapshot and clone calls the driver
/// advertises, on the real driver, node plugin and cluster: opaque CO names (upper case, 128
/// bytes) mapped to ids, idempotent create and delete, NOT_FOUND / ALREADY_EXISTS / ABORTED /
/// OUT_OF_RANGE where the spec names them, snapshot lists filtered and paged, and clones from a
/// snapshot and from a volume staged and published at the CO's own paths with the source's bytes.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class SnapshotConformanceTests : IDisposable
{
    private readonly CsiFixture _f;

    public SnapshotConformanceTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private CsiClient C => _f.Client;

    private static CreateSnapshotRequest Snap(string name, string source) => new() { Name = name, SourceVolumeId = source };

    private static CreateVolumeRequest FromSnapshot(string name, string snapshotId, long bytes, VolumeCapability capability, long limit = 0)
    {
        var request = Csi.Create(name, bytes, capability, limit);
        request.VolumeContentSource = new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = snapshotId } };
        return request;
    }

    private static CreateVolumeRequest FromVolume(string name, string volumeId, long bytes, VolumeCapability capability, long limit = 0)
    {
        var request = Csi.Create(name, bytes, capability, limit);
        request.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = volumeId } };
        return request;
    }

    [Fact]
    public async Task The_driver_advertises_snapshots_listing_and_clones_which_these_tests_cover()
    {
        var caps = await C.Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest());
        var rpcs = caps.Capabilities.Select(c => c.Rpc.Type).ToHashSet();
        Assert.Contains(ControllerRpc.CreateDeleteSnapshot, rpcs);
        Assert.Contains(ControllerRpc.ListSnapshots, rpcs);
        Assert.Contains(ControllerRpc.CloneVolume, rpcs);
        // Nothing advertised that no test here or in the other CSI tests drives.
        Assert.Subset(new HashSet<ControllerRpc>
        {
            ControllerRpc.CreateDeleteVolume, ControllerRpc.PublishUnpublishVolume, ControllerRpc.ListVolumes, ControllerRpc.GetCapacity,
            ControllerRpc.CreateDeleteSnapshot, ControllerRpc.ListSnapshots, ControllerRpc.CloneVolume, ControllerRpc.PublishReadonly,
            ControllerRpc.ExpandVolume, ControllerRpc.ListVolumesPublishedNodes, ControllerRpc.GetVolume,
        }, rpcs);
    }

    [Fact]
    public async Task Snapshot_names_with_upper_case_and_128_bytes_are_created_idempotently_and_deleted_twice()
    {
        var capability = Csi.Block();
        var source = (await C.Controller.CreateVolumeAsync(Csi.Create("Snapshot-Source-VOLUME-1", 4 * Csi.MiB, capability))).Volume.VolumeId;
        var other = (await C.Controller.CreateVolumeAsync(Csi.Create("Snapshot-Source-VOLUME-2", 4 * Csi.MiB, capability))).Volume.VolumeId;
        var name = "SANITY-snapshot-" + new string('Q', 111) + "z";
        Assert.Equal(128, name.Length);

        var first = (await C.Controller.CreateSnapshotAsync(Snap(name, source))).Snapshot;
        var again = (await C.Controller.CreateSnapshotAsync(Snap(name, source))).Snapshot;
        Assert.Equal(first, again);
        Assert.Equal(SnapshotIds.FromName(name), first.SnapshotId);
        Assert.Matches("^s-[0-9a-f]{40}$", first.SnapshotId);
        Assert.Equal(source, first.SourceVolumeId);
        Assert.Equal(4 * Csi.MiB, first.SizeBytes);
        Assert.True(first.ReadyToUse);
        Assert.NotNull(first.CreationTime);
        Assert.InRange(first.CreationTime.ToDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddMinutes(1));

        // Same name, other source: ALREADY_EXISTS, and the snapshot is unchanged.
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateSnapshotAsync(Snap(name, other)));
        var listed = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = first.SnapshotId });
        Assert.Equal(first, Assert.Single(listed.Entries).Snapshot);

        // A name like a hashed id is hashed itself and never takes another name's snapshot.
        var lookalike = (await C.Controller.CreateSnapshotAsync(Snap(first.SnapshotId, source))).Snapshot;
        Assert.NotEqual(first.SnapshotId, lookalike.SnapshotId);
        // A DNS-1123 name (the external-snapshotter's snapshot-UID) is its own id.
        var plain = (await C.Controller.CreateSnapshotAsync(Snap("snapshot-3f6c2a10-plain", source))).Snapshot;
        Assert.Equal("snapshot-3f6c2a10-plain", plain.SnapshotId);

        // Bad requests: INVALID_ARGUMENT, or NOT_FOUND for a source that does not exist; nothing is created.
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateSnapshotAsync(Snap(name + "Z", source)));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateSnapshotAsync(Snap("", source)));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateSnapshotAsync(Snap("No-Source-SNAP", "")));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.CreateSnapshotAsync(Snap("Missing-Source-SNAP", "no-such-volume-SRC")));
        var unknownParameter = Snap("Bad-Parameter-SNAP", source);
        unknownParameter.Parameters["colour"] = "blue";
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateSnapshotAsync(unknownParameter));
        var badBackup = Snap("Bad-Backup-SNAP", source);
        badBackup.Parameters[SnapshotParameters.BackupKey] = "sometimes";
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateSnapshotAsync(badBackup));
        // A backup asked of a driver without a snapshot target: FAILED_PRECONDITION before anything is taken.
        var backup = Snap("Backup-Without-Target-SNAP", source);
        backup.Parameters[SnapshotParameters.BackupKey] = "true";
        var noTarget = await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.CreateSnapshotAsync(backup));
        Assert.Contains("snapshot target", noTarget.Status.Detail, StringComparison.Ordinal);
        foreach (var refused in new[] { name + "Z", "Missing-Source-SNAP", "Bad-Parameter-SNAP", "Bad-Backup-SNAP", "Backup-Without-Target-SNAP" })
        {
            Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = SnapshotIds.FromName(refused) })).Entries);
        }

        // A volume with a snapshot is not deleted (its snapshots live in its log): FAILED_PRECONDITION, volume intact.
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source }));
        await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = source });

        // Delete is idempotent; an id the driver never issued is already deleted; an empty id is INVALID_ARGUMENT.
        foreach (var id in new[] { first.SnapshotId, lookalike.SnapshotId, plain.SnapshotId })
        {
            await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = id });
            await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = id });
            Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = id })).Entries);
        }
        await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = "Never-Issued-SNAPSHOT-id" });
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest()));
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = other });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = source }));
    }

    [Fact]
    public async Task ListSnapshots_filters_by_snapshot_and_source_and_pages_with_tokens()
    {
        var capability = Csi.Block();
        var a = (await C.Controller.CreateVolumeAsync(Csi.Create("List-Source-A", 4 * Csi.MiB, capability))).Volume.VolumeId;
        var b = (await C.Controller.CreateVolumeAsync(Csi.Create("List-Source-B", 4 * Csi.MiB, capability))).Volume.VolumeId;
        var ofA = new List<string>();
        var ofB = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ofA.Add((await C.Controller.CreateSnapshotAsync(Snap($"List-Snap-A-{i}", a))).Snapshot.SnapshotId);
        }
        for (var i = 0; i < 2; i++)
        {
            ofB.Add((await C.Controller.CreateSnapshotAsync(Snap($"List-Snap-B-{i}", b))).Snapshot.SnapshotId);
        }
        var ours = ofA.Concat(ofB).ToHashSet();

        var all = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest());
        Assert.Subset(all.Entries.Select(e => e.Snapshot.SnapshotId).ToHashSet(), ours);
        Assert.Empty(all.NextToken);

        var bySource = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a });
        Assert.Equal(ofA.Order(StringComparer.Ordinal), bySource.Entries.Select(e => e.Snapshot.SnapshotId));
        Assert.All(bySource.Entries, e => Assert.Equal(a, e.Snapshot.SourceVolumeId));
        Assert.All(bySource.Entries, e => Assert.True(e.Snapshot.ReadyToUse));

        var byId = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = ofB[1] });
        Assert.Equal(ofB[1], Assert.Single(byId.Entries).Snapshot.SnapshotId);
        Assert.Equal(b, byId.Entries[0].Snapshot.SourceVolumeId);
        Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = ofB[1], SourceVolumeId = a })).Entries);
        Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = "no-such-snapshot-LIST" })).Entries);
        Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = "no-such-volume-LIST" })).Entries);

        // Pages of two of A's three: two, then one with no further token.
        var page1 = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a, MaxEntries = 2 });
        Assert.Equal(2, page1.Entries.Count);
        Assert.NotEmpty(page1.NextToken);
        var page2 = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a, MaxEntries = 2, StartingToken = page1.NextToken });
        Assert.Single(page2.Entries);
        Assert.Empty(page2.NextToken);
        Assert.Equal(ofA.Order(StringComparer.Ordinal), page1.Entries.Concat(page2.Entries).Select(e => e.Snapshot.SnapshotId));

        // Walking everything one at a time sees each snapshot exactly once.
        var walked = new List<string>();
        var token = "";
        do
        {
            var page = await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { MaxEntries = 1, StartingToken = token });
            Assert.True(page.Entries.Count <= 1, $"a page of max 1 had {page.Entries.Count} entries");
            walked.AddRange(page.Entries.Select(e => e.Snapshot.SnapshotId));
            token = page.NextToken;
        }
        while (token.Length > 0 && walked.Count < 1000);
        Assert.Equal(walked.Count, walked.Distinct().Count());
        Assert.Subset(walked.ToHashSet(), ours);

        await Csi.AssertCode(StatusCode.Aborted, async () => await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { StartingToken = "not-a-token-of-ours" }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { MaxEntries = -1 }));

        foreach (var id in ours)
        {
            await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = id });
        }
        Assert.Empty((await C.Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a })).Entries);
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = a });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = b });
    }

    /// <summary>
    /// A filesystem volume in use on the node: snapshot (answered by the node's engine), write more,
    /// then a clone of the snapshot (larger than its source) and a clone of the volume, each staged and
    /// published at kubelet-style paths, show the files as they were at snapshot time and at clone time.
    /// </summary>
    [Fact]
    public async Task Clones_of_a_snapshot_and_of_a_volume_in_use_are_staged_and_published_at_the_COs_paths_with_the_sources_bytes()
    {
        var capability = Csi.Mount();
        var source = (await C.Controller.CreateVolumeAsync(Csi.Create("Clone-Source-FS-VOLUME", 32 * Csi.MiB, capability))).Volume.VolumeId;
        var (sourceStaging, sourceTarget) = Paths("SRC-7E1F", "Clone-Source-FS-VOLUME");
        await PublishAsync(source, sourceStaging, sourceTarget, capability);
        var before = Csi.Pattern((int)Csi.MiB, seed: 41);
        Csi.WriteDurably(Path.Combine(sourceTarget, "data.bin"), before);

        var snapshot = (await C.Controller.CreateSnapshotAsync(Snap("Snapshot-Of-FS-Volume-UPPER", source))).Snapshot;
        Assert.True(snapshot.ReadyToUse);
        var after = Csi.Pattern((int)Csi.MiB, seed: 42);
        Csi.WriteDurably(Path.Combine(sourceTarget, "data.bin"), after);

        // Clone of the snapshot, asked larger than its source.
        var restoreName = "Restore-From-Snapshot-UPPER-Case";
        var restored = (await C.Controller.CreateVolumeAsync(FromSnapshot(restoreName, snapshot.SnapshotId, 48 * Csi.MiB, capability))).Volume;
        Assert.Equal(48 * Csi.MiB, restored.CapacityBytes);
        Assert.Equal(snapshot.SnapshotId, restored.ContentSource.Snapshot.SnapshotId);
        Assert.Equal(restored, (await C.Controller.CreateVolumeAsync(FromSnapshot(restoreName, snapshot.SnapshotId, 48 * Csi.MiB, capability))).Volume);
        Assert.Equal(restored, (await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = restored.VolumeId })).Volume);
        var info = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = restored.VolumeId });
        Assert.Equal(restoreName, info.Labels[VolumeIds.NameLabel]);

        // Clone of the volume while its engine runs on the node.
        var cloneName = "Clone-Of-Volume-In-Use-UPPER";
        var cloned = (await C.Controller.CreateVolumeAsync(FromVolume(cloneName, source, 0, capability))).Volume;
        Assert.Equal(32 * Csi.MiB, cloned.CapacityBytes);
        Assert.Equal(source, cloned.ContentSource.Volume.VolumeId);
        Assert.Equal(cloned, (await C.Controller.CreateVolumeAsync(FromVolume(cloneName, source, 0, capability))).Volume);
        var listed = await C.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.Equal(source, listed.Entries.Single(e => e.Volume.VolumeId == cloned.VolumeId).Volume.ContentSource.Volume.VolumeId);

        // Same name, other (or no) source: ALREADY_EXISTS. Missing sources: NOT_FOUND. A limit below the source: OUT_OF_RANGE.
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(FromVolume(restoreName, source, 48 * Csi.MiB, capability)));
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(Csi.Create(cloneName, 32 * Csi.MiB, capability)));
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(FromSnapshot("Clone-Source-FS-VOLUME", snapshot.SnapshotId, 32 * Csi.MiB, capability)));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.CreateVolumeAsync(FromSnapshot("From-Missing-SNAPSHOT", "no-such-snapshot", 0, capability)));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.CreateVolumeAsync(FromSnapshot("From-Unissued-SNAPSHOT-id", "Not A Snapshot Id", 0, capability)));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.CreateVolumeAsync(FromVolume("From-Missing-VOLUME", "no-such-volume", 0, capability)));
        var small = await Csi.AssertCode(StatusCode.OutOfRange, async () =>
            await C.Controller.CreateVolumeAsync(FromSnapshot("Too-Small-For-Snapshot", snapshot.SnapshotId, 8 * Csi.MiB, capability, limit: 16 * Csi.MiB)));
        Assert.Contains("smaller than its source", small.Status.Detail, StringComparison.Ordinal);
        await Csi.AssertCode(StatusCode.OutOfRange, async () =>
            await C.Controller.CreateVolumeAsync(FromVolume("Too-Small-For-Volume", source, 0, capability, limit: 16 * Csi.MiB)));
        var refusedIds = new[] { "From-Missing-SNAPSHOT", "From-Unissued-SNAPSHOT-id", "From-Missing-VOLUME", "Too-Small-For-Snapshot", "Too-Small-For-Volume" }
            .Select(VolumeIds.FromName).ToHashSet();
        Assert.DoesNotContain((await C.Controller.ListVolumesAsync(new ListVolumesRequest())).Entries, e => refusedIds.Contains(e.Volume.VolumeId));

        // The snapshot's clone shows the file as it was when the snapshot was taken.
        var (restoreStaging, restoreTarget) = Paths("RESTORE-9B98", restoreName);
        await PublishAsync(restored.VolumeId, restoreStaging, restoreTarget, capability);
        Assert.Equal(before, await File.ReadAllBytesAsync(Path.Combine(restoreTarget, "data.bin")));
        // The clone is writable on its own: the source keeps its bytes.
        var own = Csi.Pattern((int)Csi.MiB, seed: 43);
        Csi.WriteDurably(Path.Combine(restoreTarget, "data.bin"), own);
        Assert.Equal(own, await File.ReadAllBytesAsync(Path.Combine(restoreTarget, "data.bin")));
        Assert.Equal(after, await File.ReadAllBytesAsync(Path.Combine(sourceTarget, "data.bin")));

        // The volume's clone shows the file as it was at clone time.
        var (cloneStaging, cloneTarget) = Paths("CLONE-40872A61", cloneName);
        await PublishAsync(cloned.VolumeId, cloneStaging, cloneTarget, capability);
        Assert.Equal(after, await File.ReadAllBytesAsync(Path.Combine(cloneTarget, "data.bin")));

        // Deleting the snapshot leaves its clone whole (the clone pins what it shares).
        await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId });
        await UnpublishAsync(restored.VolumeId, restoreStaging, restoreTarget);
        await PublishAsync(restored.VolumeId, restoreStaging, restoreTarget, capability);
        Assert.Equal(own, await File.ReadAllBytesAsync(Path.Combine(restoreTarget, "data.bin")));

        await UnpublishAsync(restored.VolumeId, restoreStaging, restoreTarget);
        await UnpublishAsync(cloned.VolumeId, cloneStaging, cloneTarget);
        await UnpublishAsync(source, sourceStaging, sourceTarget);
        // The source shares its data with the clones: FAILED_PRECONDITION until they are gone.
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source }));
        foreach (var id in new[] { restored.VolumeId, cloned.VolumeId, source })
        {
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
            await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id }));
        }
    }

    /// <summary>
    /// A block volume nobody serves: the controller freezes its index itself. The clone of the snapshot,
    /// asked smaller than its source without a limit, gets the source's size and the source's bytes.
    /// </summary>
    [Fact]
    public async Task A_snapshot_of_an_idle_block_volume_restores_byte_for_byte_through_the_raw_device()
    {
        var capability = Csi.Block();
        var source = (await C.Controller.CreateVolumeAsync(Csi.Create("Idle-Block-SOURCE", 16 * Csi.MiB, capability))).Volume.VolumeId;
        var (staging, device) = Paths("BLOCK-SRC", "Idle-Block-SOURCE");
        await PublishAsync(source, staging, device, capability);
        var head = Csi.Pattern((int)Csi.MiB, seed: 51);
        var tail = Csi.Pattern((int)Csi.MiB, seed: 52);
        Csi.WriteDevice(device, 0, head);
        Csi.WriteDevice(device, 15 * Csi.MiB, tail);
        await UnpublishAsync(source, staging, device);

        var snapshot = (await C.Controller.CreateSnapshotAsync(Snap("Idle-Block-SNAPSHOT", source))).Snapshot;
        Assert.Equal(16 * Csi.MiB, snapshot.SizeBytes);
        var restored = (await C.Controller.CreateVolumeAsync(FromSnapshot("Idle-Block-RESTORE", snapshot.SnapshotId, Csi.MiB, capability))).Volume;
        Assert.Equal(16 * Csi.MiB, restored.CapacityBytes);

        var (restoreStaging, restoreDevice) = Paths("BLOCK-RESTORE", "Idle-Block-RESTORE");
        await PublishAsync(restored.VolumeId, restoreStaging, restoreDevice, capability);
        Assert.Equal(head, Csi.ReadDevice(restoreDevice, 0, head.Length));
        Assert.Equal(tail, Csi.ReadDevice(restoreDevice, 15 * Csi.MiB, tail.Length));
        Assert.Equal(new byte[Csi.MiB], Csi.ReadDevice(restoreDevice, 7 * Csi.MiB, (int)Csi.MiB));
        await UnpublishAsync(restored.VolumeId, restoreStaging, restoreDevice);

        await C.Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = restored.VolumeId });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = source }));
    }

    /// <summary>Kubelet-style staging and target paths, named after the CO's PV name (upper case and all).</summary>
    private (string Staging, string Target) Paths(string pvHash, string name) =>
        (_f.Root.Combine("kubelet", "plugins", "kubernetes.io", "csi", "feitian.csi.k8s.io", pvHash, "globalmount"),
         _f.Root.Combine("kubelet", "pods", $"POD-{pvHash}", "volumes", "kubernetes.io~csi", name, "mount"));

    private async Task PublishAsync(string id, string staging, string target, VolumeCapability capability)
    {
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = capability });
        await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = capability });
    }

    private async Task UnpublishAsync(string id, string staging, string target)
    {
        await C.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
    }
}
