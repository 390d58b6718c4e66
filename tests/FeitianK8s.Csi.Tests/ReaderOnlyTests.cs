using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using MasterApi = FeitianK8s.Proto.Master;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Read-only stages run a lease-free engine: several nodes read one volume at once
/// (MULTI_NODE_READER_ONLY), and a reader never fences the node that writes it.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class ReaderOnlyTests : IDisposable
{
    private readonly CsiFixture _f;

    public ReaderOnlyTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    [Fact]
    public async Task Reader_stage_on_another_node_does_not_fence_the_writer_of_a_block_volume()
    {
        var c = _f.Client;
        var writerCap = Csi.Block();
        var readerCap = Csi.Block(Mode.MultiNodeReaderOnly);
        var id = (await c.Controller.CreateVolumeAsync(Csi.Create("pvc-rox-block", 16 * Csi.MiB, writerCap))).Volume.VolumeId;
        var writerStaging = _f.Root.Combine("kubelet", "rox-block", "a-staging");
        var writerTarget = _f.Root.Combine("kubelet", "rox-block", "a-dev");
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = writerCap });
        await c.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging, VolumeCapability = writerCap });
        await c.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging, TargetPath = writerTarget, VolumeCapability = writerCap });
        var first = Csi.Pattern((int)Csi.MiB, seed: 11);
        Csi.WriteDevice(writerTarget, 2 * Csi.MiB, first);

        await using var nodeB = await _f.StartDriverAsync("node-b", _f.Root.Combine("node-b", "state"), mode: CsiMode.Node);
        var readerStaging = _f.Root.Combine("kubelet", "rox-block", "b-staging");
        var readerTarget = _f.Root.Combine("kubelet", "rox-block", "b-dev");
        var published = await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = id, NodeId = "node-b", VolumeCapability = readerCap, Readonly = true,
        });
        var stage = new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = readerStaging, VolumeCapability = readerCap };
        stage.PublishContext.Add(published.PublishContext);
        await nodeB.Client.Node.NodeStageVolumeAsync(stage);
        await nodeB.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = id, StagingTargetPath = readerStaging, TargetPath = readerTarget, VolumeCapability = readerCap, Readonly = true,
        });
        Assert.Equal(first, Csi.ReadDevice(readerTarget, 2 * Csi.MiB, first.Length));
        // The reader's device is read-only: opening it for writing is refused by the kernel, and the
        // refused write changed nothing the writer sees.
        var refused = Assert.Throws<UnauthorizedAccessException>(() => Csi.WriteDevice(readerTarget, 0, Csi.Pattern(4096, seed: 13)));
        _f.Output.Current?.WriteLine($"write through the reader's device refused: {refused.Message}");
        Assert.Equal(new byte[4096], Csi.ReadDevice(writerTarget, 0, 4096));

        // The writer still holds the lease and keeps writing after the reader opened the volume.
        var status = await c.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id });
        Assert.Equal([CsiFixture.NodeA, "node-b"], status.Status.PublishedNodeIds);
        var onMaster = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id });
        Assert.Equal(CsiFixture.NodeA, onMaster.LeaseHolder);
        var second = Csi.Pattern((int)Csi.MiB, seed: 12);
        Csi.WriteDevice(writerTarget, 6 * Csi.MiB, second);
        Assert.Equal(second, Csi.ReadDevice(writerTarget, 6 * Csi.MiB, second.Length));
        var health = await c.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = writerTarget });
        Assert.False(health.VolumeCondition.Abnormal, health.VolumeCondition.Message);

        await nodeB.Client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = readerTarget });
        await nodeB.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = readerStaging });
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = "node-b" });
        // The writer's data survives the reader going away, and a fresh writable stage sees both writes.
        await c.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = writerTarget });
        await c.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging });
        await c.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging, VolumeCapability = writerCap });
        await c.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging, TargetPath = writerTarget, VolumeCapability = writerCap });
        Assert.Equal(first, Csi.ReadDevice(writerTarget, 2 * Csi.MiB, first.Length));
        Assert.Equal(second, Csi.ReadDevice(writerTarget, 6 * Csi.MiB, second.Length));
        await c.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = writerTarget });
        await c.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = writerStaging });
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    [Fact]
    public async Task Filesystem_is_mounted_read_only_on_two_nodes_at_once()
    {
        var c = _f.Client;
        var writerCap = Csi.Mount();
        var readerCap = Csi.Mount(Mode.MultiNodeReaderOnly);
        var id = (await c.Controller.CreateVolumeAsync(Csi.Create("pvc-rox-fs", 32 * Csi.MiB, writerCap))).Volume.VolumeId;
        var staging = _f.Root.Combine("kubelet", "rox-fs", "a-staging");
        var target = _f.Root.Combine("kubelet", "rox-fs", "a-target");
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = writerCap });
        await c.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = writerCap });
        await c.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = writerCap });
        var content = Csi.Pattern((int)(2 * Csi.MiB), seed: 21);
        Csi.WriteDurably(Path.Combine(target, "shared.bin"), content);
        await c.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        await c.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });

        var readers = new List<(DriverInstance Driver, string Staging, string Target)>();
        try
        {
            foreach (var node in new[] { "node-r1", "node-r2" })
            {
                var driver = await _f.StartDriverAsync(node, _f.Root.Combine(node, "state"), mode: CsiMode.Node);
                var reader = (driver, _f.Root.Combine("kubelet", "rox-fs", node + "-staging"), _f.Root.Combine("kubelet", "rox-fs", node + "-target"));
                readers.Add(reader);
                await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = node, VolumeCapability = readerCap, Readonly = true });
                for (var i = 0; i < 2; i++)
                {
                    await driver.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = reader.Item2, VolumeCapability = readerCap });
                    await driver.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
                    {
                        VolumeId = id, StagingTargetPath = reader.Item2, TargetPath = reader.Item3, VolumeCapability = readerCap, Readonly = true,
                    });
                }
            }
            // Both nodes hold the volume open at once; neither took the write lease.
            foreach (var (_, _, readerTarget) in readers)
            {
                Assert.Equal(content, await File.ReadAllBytesAsync(Path.Combine(readerTarget, "shared.bin")));
                var refused = Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(readerTarget, "new.txt"), "must fail"));
                Assert.Contains("Read-only file system", refused.Message);
                Assert.False(File.Exists(Path.Combine(readerTarget, "new.txt")));
            }
            var status = await c.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id });
            Assert.Equal(["node-r1", "node-r2"], status.Status.PublishedNodeIds);
            Assert.Equal("", (await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id })).LeaseHolder);
            // A volume published to readers is not deleted under them.
            await Csi.AssertCode(Grpc.Core.StatusCode.FailedPrecondition, async () => await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id }));
            // The staging mounts are read-only too, not only the bind mounts.
            Assert.All(readers, r => Assert.Contains("ro", Mounter.FindMount(r.Staging)!.Options.Split(',')));
        }
        finally
        {
            foreach (var (driver, readerStaging, readerTarget) in readers)
            {
                await driver.Client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = readerTarget });
                await driver.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = readerStaging });
                await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = driver.Host.Options.NodeId });
                await driver.DisposeAsync();
            }
        }
        await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }
}
