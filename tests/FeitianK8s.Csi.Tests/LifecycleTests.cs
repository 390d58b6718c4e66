using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using Grpc.Core;

namespace FeitianK8s.Csi.Tests;

/// <summary>The whole volume lifecycle through the real driver, with every call made twice (idempotency).</summary>
[Collection(CsiCollection.Name)]
public sealed class LifecycleTests : IDisposable
{
    private readonly CsiFixture _f;

    public LifecycleTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    [Fact]
    public async Task Filesystem_lifecycle_keeps_files_across_restage_and_grows_on_expand()
    {
        var c = _f.Client;
        var staging = _f.Root.Combine("kubelet", "life", "staging");
        var target = _f.Root.Combine("kubelet", "life", "target");
        var capability = Csi.Mount();

        var created = await c.Controller.CreateVolumeAsync(Csi.Create("pvc-life", 60 * Csi.MiB + 1, capability));
        var again = await c.Controller.CreateVolumeAsync(Csi.Create("pvc-life", 60 * Csi.MiB + 1, capability));
        Assert.Equal("pvc-life", created.Volume.VolumeId);
        Assert.Equal(60 * Csi.MiB + 4096, created.Volume.CapacityBytes); // rounded up to 4 KiB
        Assert.Equal(created.Volume, again.Volume);
        var id = created.Volume.VolumeId;

        for (var i = 0; i < 2; i++)
        {
            await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        }
        var published = await c.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id });
        Assert.Equal([CsiFixture.NodeA], published.Status.PublishedNodeIds);

        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, target, capability, readOnly: false);

        var big = Csi.Pattern((int)(3 * Csi.MiB), seed: 1);
        Csi.WriteDurably(Path.Combine(target, "big.bin"), big);
        // A repeated ControllerPublish while the node runs the engine must not take the lease
        // again (that would fence the node): writes keep working.
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        Directory.CreateDirectory(Path.Combine(target, "dir"));
        Csi.WriteDurably(Path.Combine(target, "dir", "hello.txt"), "hello feitian"u8.ToArray());

        await UnpublishTwice(id, target);
        Assert.False(Directory.Exists(target));
        await UnstageTwice(id, staging);
        Assert.False(Mounter.IsMounted(staging));

        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, target, capability, readOnly: false);
        Assert.Equal(big, await File.ReadAllBytesAsync(Path.Combine(target, "big.bin")));
        Assert.Equal("hello feitian", await File.ReadAllTextAsync(Path.Combine(target, "dir", "hello.txt")));

        var before = await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.False(before.VolumeCondition.Abnormal, before.VolumeCondition.Message);
        var bytesBefore = before.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes);
        Assert.InRange(bytesBefore.Total, 40 * Csi.MiB, 61 * Csi.MiB);
        Assert.True(bytesBefore.Used >= 3 * Csi.MiB, $"used {bytesBefore.Used}");
        Assert.Contains(before.Usage, u => u.Unit == VolumeUsage.Types.Unit.Inodes && u.Total > 0);

        for (var i = 0; i < 2; i++)
        {
            var expanded = await c.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
            {
                VolumeId = id, CapacityRange = new CapacityRange { RequiredBytes = 128 * Csi.MiB }, VolumeCapability = capability,
            });
            Assert.Equal(128 * Csi.MiB, expanded.CapacityBytes);
            Assert.True(expanded.NodeExpansionRequired);
        }
        for (var i = 0; i < 2; i++)
        {
            var nodeExpanded = await c.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
            {
                VolumeId = id, VolumePath = target, StagingTargetPath = staging, VolumeCapability = capability,
                CapacityRange = new CapacityRange { RequiredBytes = 128 * Csi.MiB },
            });
            Assert.Equal(128 * Csi.MiB, nodeExpanded.CapacityBytes);
        }
        var after = await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        var bytesAfter = after.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes);
        _f.Output.Current?.WriteLine($"filesystem size {bytesBefore.Total} -> {bytesAfter.Total}");
        Assert.True(bytesAfter.Total > bytesBefore.Total + 50 * Csi.MiB, $"filesystem did not grow: {bytesBefore.Total} -> {bytesAfter.Total}");
        Assert.Equal(big, await File.ReadAllBytesAsync(Path.Combine(target, "big.bin")));
        // The grown space is usable.
        var more = Csi.Pattern((int)(70 * Csi.MiB), seed: 2);
        Csi.WriteDurably(Path.Combine(target, "more.bin"), more);
        Assert.Equal(more, await File.ReadAllBytesAsync(Path.Combine(target, "more.bin")));

        await UnpublishTwice(id, target);
        await UnstageTwice(id, staging);
        for (var i = 0; i < 2; i++)
        {
            await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        }
        for (var i = 0; i < 2; i++)
        {
            await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
        await Csi.AssertCode(StatusCode.NotFound, async () => await c.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id }));
        // The node forgot the volume and left nothing mounted.
        var stager = Assert.IsType<NodeStager>(_f.Driver.Host.Services.GetService(typeof(NodeStager)));
        Assert.Null(stager.Find(id));
        Assert.False(Mounter.IsMounted(staging), $"{staging} is still mounted after unstage");
        Assert.False(Mounter.IsMounted(target), $"{target} is still mounted after unpublish");
    }

    [Fact]
    public async Task Block_volume_is_written_and_read_through_the_device_and_grows()
    {
        var c = _f.Client;
        var staging = _f.Root.Combine("kubelet", "block", "staging");
        var target = _f.Root.Combine("kubelet", "block", "dev", "pvc-block");
        var capability = Csi.Block();
        var id = (await c.Controller.CreateVolumeAsync(Csi.Create("pvc-block", 16 * Csi.MiB, capability))).Volume.VolumeId;
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, target, capability, readOnly: false);

        Assert.Equal(16 * Csi.MiB, LoopDevices.SizeOf(target));
        var data = Csi.Pattern((int)Csi.MiB, seed: 3);
        await using (var device = new FileStream(target, FileMode.Open, FileAccess.ReadWrite))
        {
            device.Position = 5 * Csi.MiB;
            device.Write(data);
            device.Flush(flushToDisk: true);
        }
        await UnpublishTwice(id, target);
        await UnstageTwice(id, staging);
        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, target, capability, readOnly: false);
        Assert.Equal(data, Csi.ReadDevice(target, 5 * Csi.MiB, data.Length));

        await c.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = id, CapacityRange = new CapacityRange { RequiredBytes = 32 * Csi.MiB } });
        await c.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = id, VolumePath = target, StagingTargetPath = staging, VolumeCapability = capability });
        Assert.Equal(32 * Csi.MiB, LoopDevices.SizeOf(target));
        var tail = Csi.Pattern(4096, seed: 4);
        await using (var device = new FileStream(target, FileMode.Open, FileAccess.ReadWrite))
        {
            device.Position = 32 * Csi.MiB - 4096;
            device.Write(tail);
            device.Flush(flushToDisk: true);
        }
        Assert.Equal(tail, Csi.ReadDevice(target, 32 * Csi.MiB - 4096, 4096));
        Assert.Equal(data, Csi.ReadDevice(target, 5 * Csi.MiB, data.Length));
        var stats = await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.Equal(32 * Csi.MiB, stats.Usage.Single().Total);

        await UnpublishTwice(id, target);
        Assert.False(File.Exists(target));
        await UnstageTwice(id, staging);
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    [Fact]
    public async Task Read_only_publish_refuses_writes_while_the_writable_one_works()
    {
        var c = _f.Client;
        var staging = _f.Root.Combine("kubelet", "ro", "staging");
        var writable = _f.Root.Combine("kubelet", "ro", "rw");
        var readOnly = _f.Root.Combine("kubelet", "ro", "ro");
        var capability = Csi.Mount();
        var id = (await c.Controller.CreateVolumeAsync(Csi.Create("pvc-ro", 32 * Csi.MiB, capability))).Volume.VolumeId;
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, writable, capability, readOnly: false);
        await PublishTwice(id, staging, readOnly, capability, readOnly: true);

        Csi.WriteDurably(Path.Combine(writable, "a.txt"), "written"u8.ToArray());
        Assert.Equal("written", await File.ReadAllTextAsync(Path.Combine(readOnly, "a.txt")));
        // EROFS from the kernel, exactly (not, say, a missing file or a permission error).
        Assert.Contains("Read-only file system", Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(readOnly, "b.txt"), "must fail")).Message);
        Assert.Contains("Read-only file system", Assert.Throws<IOException>(() => File.Delete(Path.Combine(readOnly, "a.txt"))).Message);
        Assert.False(File.Exists(Path.Combine(writable, "b.txt")));
        Assert.True(File.Exists(Path.Combine(writable, "a.txt")));

        // Publishing the same target again with the other read-only flag is incompatible.
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await c.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = id, StagingTargetPath = staging, TargetPath = readOnly, VolumeCapability = capability, Readonly = false,
        }));
        // Unstaging while published is refused and changes nothing.
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () =>
            await c.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging }));
        Assert.Equal("written", await File.ReadAllTextAsync(Path.Combine(writable, "a.txt")));

        await UnpublishTwice(id, readOnly);
        await UnpublishTwice(id, writable);
        await UnstageTwice(id, staging);
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    [Fact]
    public async Task Xfs_volume_is_made_mounted_and_grown_online()
    {
        var c = _f.Client;
        var staging = _f.Root.Combine("kubelet", "xfs", "staging");
        var target = _f.Root.Combine("kubelet", "xfs", "target");
        var capability = Csi.Mount(fsType: "xfs");
        var request = Csi.Create("pvc-xfs", 320 * Csi.MiB, capability); // mkfs.xfs wants at least 300 MiB
        request.Parameters["fsType"] = "xfs";
        var id = (await c.Controller.CreateVolumeAsync(request)).Volume.VolumeId;
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await StageTwice(id, staging, capability);
        await PublishTwice(id, staging, target, capability, readOnly: false);
        Assert.Equal("xfs", Mounter.FindMount(staging)!.FsType);
        var data = Csi.Pattern((int)(2 * Csi.MiB), seed: 21);
        Csi.WriteDurably(Path.Combine(target, "x.bin"), data);
        var stagingMount = Mounter.FindMount(staging);
        Assert.NotNull(stagingMount);
        Assert.Equal("xfs", stagingMount.FsType);

        var before = (await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target })).Usage
            .Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes).Total;
        await c.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = id, CapacityRange = new CapacityRange { RequiredBytes = 400 * Csi.MiB } });
        await c.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = id, VolumePath = target, StagingTargetPath = staging, VolumeCapability = capability });
        var after = (await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target })).Usage
            .Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes).Total;
        _f.Output.Current?.WriteLine($"xfs size {before} -> {after}");
        Assert.True(after > before + 60 * Csi.MiB, $"xfs did not grow: {before} -> {after}");
        Assert.Equal(data, await File.ReadAllBytesAsync(Path.Combine(target, "x.bin")));

        await UnpublishTwice(id, target);
        await UnstageTwice(id, staging);
        await StageTwice(id, staging, capability);
        Assert.Equal(data, await File.ReadAllBytesAsync(Path.Combine(staging, "x.bin")));
        await UnstageTwice(id, staging);
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        // The xfs staging mount is gone, not just the bookkeeping.
        Assert.Null(Mounter.FindMount(staging));
        Assert.Null(Mounter.FindMount(target));
    }

    private async Task StageTwice(string id, string staging, VolumeCapability capability)
    {
        for (var i = 0; i < 2; i++)
        {
            await _f.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = capability });
        }
    }

    private async Task UnstageTwice(string id, string staging)
    {
        for (var i = 0; i < 2; i++)
        {
            await _f.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        }
    }

    private async Task PublishTwice(string id, string staging, string target, VolumeCapability capability, bool readOnly)
    {
        for (var i = 0; i < 2; i++)
        {
            await _f.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
            {
                VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = capability, Readonly = readOnly,
            });
        }
    }

    private async Task UnpublishTwice(string id, string target)
    {
        for (var i = 0; i < 2; i++)
        {
            await _f.Client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        }
    }
}
