using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using Microsoft.Extensions.DependencyInjection;

namespace FeitianK8s.Csi.Tests;

/// <summary>The node plugin restarts with volumes staged; its volume hosts can also crash.</summary>
[Collection(CsiCollection.Name)]
public sealed class RestartTests : IDisposable
{
    private readonly CsiFixture _f;

    public RestartTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    [Fact]
    public async Task Restarted_node_plugin_keeps_staged_volume_usable_without_remounting_and_rebuilds_after_an_engine_crash()
    {
        var staging = _f.Root.Combine("kubelet", "restart", "staging");
        var target = _f.Root.Combine("kubelet", "restart", "target");
        var cap = Csi.Mount();
        var id = (await _f.Client.Controller.CreateVolumeAsync(Csi.Create("pvc-restart", 32 * Csi.MiB, cap))).Volume.VolumeId;
        await _f.Client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = cap });
        await _f.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        await _f.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = cap });
        var first = Csi.Pattern((int)Csi.MiB, seed: 11);
        Csi.WriteDurably(Path.Combine(target, "first.bin"), first);
        var stagingMount = MountId(staging);
        var targetMount = MountId(target);

        // 1. A clean restart of the plugin: the data path runs in separate processes and stays.
        await _f.RestartDriverAsync();
        await _f.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        await _f.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = cap });
        Assert.Equal(stagingMount, MountId(staging));
        Assert.Equal(targetMount, MountId(target));
        Assert.Equal(first, await File.ReadAllBytesAsync(Path.Combine(target, "first.bin")));
        var second = Csi.Pattern((int)Csi.MiB, seed: 12);
        Csi.WriteDurably(Path.Combine(target, "second.bin"), second);
        var healthy = await _f.Client.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.False(healthy.VolumeCondition.Abnormal, healthy.VolumeCondition.Message);

        // 2. The volume's engine crashes (SIGKILL): the condition turns abnormal ...
        var record = _f.Driver.Host.Services.GetRequiredService<NodeStager>().Find(id)!;
        using (var host = System.Diagnostics.Process.GetProcessById(record.HostPid))
        {
            host.Kill();
            await host.WaitForExitAsync();
        }
        var sick = await _f.Client.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.True(sick.VolumeCondition.Abnormal);
        _f.Output.Current?.WriteLine($"condition after the crash: {sick.VolumeCondition.Message}");

        // ... and the restarted plugin rebuilds the chain; every acknowledged (fsynced) byte is there.
        await _f.RestartDriverAsync();
        var rebuilt = _f.Driver.Host.Services.GetRequiredService<NodeStager>().Find(id)!;
        Assert.NotEqual(record.HostPid, rebuilt.HostPid);
        Assert.True(NodeCleanup.IsMounted(staging));
        Assert.True(NodeCleanup.IsMounted(target));
        Assert.Equal(first, await File.ReadAllBytesAsync(Path.Combine(target, "first.bin")));
        Assert.Equal(second, await File.ReadAllBytesAsync(Path.Combine(target, "second.bin")));
        var third = Csi.Pattern((int)Csi.MiB, seed: 13);
        Csi.WriteDurably(Path.Combine(target, "third.bin"), third);
        var after = await _f.Client.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.False(after.VolumeCondition.Abnormal, after.VolumeCondition.Message);

        await _f.Client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        await _f.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        // Staged once more after all that, the data is still there.
        await _f.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        Assert.Equal(third, await File.ReadAllBytesAsync(Path.Combine(staging, "third.bin")));
        await _f.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        await _f.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await _f.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    /// <summary>The mount id (first field of mountinfo) of the mount at <paramref name="path"/>: a remount gets a new one.</summary>
    private static string MountId(string path) =>
        File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')).Last(f => f[4] == path)[0];
}
