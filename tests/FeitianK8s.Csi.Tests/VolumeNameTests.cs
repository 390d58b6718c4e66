using FeitianK8s.Csi.Controller;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using Grpc.Core;
using MasterApi = FeitianK8s.Proto.Master;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// CreateVolume names are the CO's opaque strings (CSI spec: up to 128 bytes, any case):
/// each maps to an internal id the master accepts, the same name gives the same volume,
/// and every later call works with that id, on the real driver and cluster.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class VolumeNameTests : IDisposable
{
    private readonly CsiFixture _f;

    public VolumeNameTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private CsiClient C => _f.Client;

    [Fact]
    public async Task Sanity_style_upper_case_name_is_created_idempotently_and_staged_at_the_COs_own_paths()
    {
        const string name = "sanity-controller-create-single-no-capacity-9B9893D7-40872A61";
        var capability = Csi.Mount();
        var created = await C.Controller.CreateVolumeAsync(Csi.Create(name, 8 * Csi.MiB, capability));
        var again = await C.Controller.CreateVolumeAsync(Csi.Create(name, 8 * Csi.MiB, capability));
        var id = created.Volume.VolumeId;
        Assert.Equal(created.Volume, again.Volume);
        Assert.NotEqual(name, id);
        Assert.Equal(VolumeIds.FromName(name), id);
        Assert.Matches("^v-[0-9a-f]{40}$", id);
        // The master keeps the CO's name with the volume.
        var info = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id });
        Assert.Equal(name, info.Labels[VolumeIds.NameLabel]);

        // Incompatible re-create of the same name: ALREADY_EXISTS, nothing changed.
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(Csi.Create(name, 64 * Csi.MiB, capability)));
        Assert.Equal(8 * Csi.MiB, (long)(await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id })).SizeBytes);

        // Kubelet-style paths named after the CO's PV name (upper case and all).
        var staging = _f.Root.Combine("kubelet", "plugins", "kubernetes.io", "csi", "csi.feitian.io", "9B9893D740872A61", "globalmount");
        var target = _f.Root.Combine("kubelet", "pods", "4F0C-UID", "volumes", "kubernetes.io~csi", name, "mount");
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = capability });
        await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = capability });
        var data = Csi.Pattern((int)Csi.MiB, seed: 11);
        Csi.WriteDurably(Path.Combine(target, "data.bin"), data);
        Assert.Equal(data, await File.ReadAllBytesAsync(Path.Combine(target, "data.bin")));
        var listed = await C.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.Equal([CsiFixture.NodeA], listed.Entries.Single(e => e.Volume.VolumeId == id).Status.PublishedNodeIds);

        await C.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        Assert.False(Mounter.IsMounted(staging));
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id }));
    }

    [Fact]
    public async Task DeleteVolume_is_refused_while_a_snapshot_or_a_clone_shares_its_data()
    {
        var capability = Csi.Block();
        var id = (await C.Controller.CreateVolumeAsync(Csi.Create("Snapshotted-Volume", 4 * Csi.MiB, capability))).Volume.VolumeId;
        using var fs = _f.Cluster.CreateClient();
        var snapshots = new VolumeSnapshots(fs, fs.Master, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        // Some data, so that a clone shares a log segment with the volume (an empty volume shares none).
        var engine = await RafVolume.OpenAsync(fs, new MasterVolumeCatalog(fs.Master), id,
            new RafOptions { Holder = "test-writer", GcInterval = null, SnapshotRequestInterval = null }, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, CancellationToken.None);
        await engine.WriteAsync(0, Csi.Pattern((int)Csi.MiB, seed: 12), fua: true);
        await engine.DisposeAsync();
        await _f.Master.AcquireVolumeLeaseAsync(new MasterApi.AcquireVolumeLeaseRequest { Name = id, Holder = "" });
        await snapshots.CreateAsync(id, "csi-dependent-snap", CancellationToken.None);
        var refused = await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id }));
        Assert.Contains("csi-dependent-snap", refused.Status.Detail, StringComparison.Ordinal);

        await snapshots.CreateVolumeFromVolumeAsync("csi-dependent-clone", id, null, CancellationToken.None);
        await snapshots.RemoveAsync("csi-dependent-snap", CancellationToken.None);
        refused = await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id }));
        Assert.Contains("csi-dependent-clone", refused.Status.Detail, StringComparison.Ordinal);
        // The clone does not inherit the CO's name of its source.
        var clone = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = "csi-dependent-clone" });
        Assert.False(clone.Labels.ContainsKey(VolumeIds.NameLabel));

        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "csi-dependent-clone" });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id }));
    }

    [Fact]
    public async Task Names_of_128_characters_with_upper_case_map_to_distinct_ids_and_129_is_refused()
    {
        var capability = Csi.Block();
        var longName = "Upper-" + new string('X', 121) + "a";
        var longName2 = "Upper-" + new string('X', 121) + "b";
        Assert.Equal(128, longName.Length);
        var first = await C.Controller.CreateVolumeAsync(Csi.Create(longName, 4 * Csi.MiB, capability));
        var second = await C.Controller.CreateVolumeAsync(Csi.Create(longName2, 4 * Csi.MiB, capability));
        Assert.NotEqual(first.Volume.VolumeId, second.Volume.VolumeId);
        Assert.Equal(first.Volume, (await C.Controller.CreateVolumeAsync(Csi.Create(longName, 4 * Csi.MiB, capability))).Volume);

        // A DNS-1123 name (what the external-provisioner sends) stays its own id.
        var plain = await C.Controller.CreateVolumeAsync(Csi.Create("pvc-5d1c7e9a-names", 4 * Csi.MiB, capability));
        Assert.Equal("pvc-5d1c7e9a-names", plain.Volume.VolumeId);
        // A name shaped like a hashed id is hashed itself: it can never take another name's volume.
        var lookalike = await C.Controller.CreateVolumeAsync(Csi.Create(first.Volume.VolumeId, 4 * Csi.MiB, capability));
        Assert.NotEqual(first.Volume.VolumeId, lookalike.Volume.VolumeId);

        var tooLong = longName + "Z";
        var e = await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(Csi.Create(tooLong, 4 * Csi.MiB, capability)));
        Assert.Contains("128", e.Status.Detail, StringComparison.Ordinal);
        var all = await C.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.DoesNotContain(all.Entries, v => v.Volume.VolumeId == VolumeIds.FromName(tooLong));

        foreach (var id in new[] { first.Volume.VolumeId, second.Volume.VolumeId, plain.Volume.VolumeId, lookalike.Volume.VolumeId })
        {
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }
}
