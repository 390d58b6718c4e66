using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Issue 9: the CSI controller works against a Raft group of three masters with any one of them
/// down. Its own cluster (3 master processes, 3 chunk servers); the leader is killed with SIGKILL
/// and proven down before the driver is used, so every call must find the new leader by itself.
/// </summary>
public sealed class ThreeMasterTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _root = new("feitian-csi-raft");
    private TestCluster _cluster = null!;

    public async Task InitializeAsync() =>
        _cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(output, LogLevel.Warning), chunkServers: 3, racks: 3, masters: 3);

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        _root.Dispose();
    }

    [Fact]
    public async Task Controller_creates_publishes_and_deletes_volumes_with_the_leader_killed()
    {
        var options = new CsiDriverOptions
        {
            SocketPath = _root.Combine("csi.sock"),
            Mode = CsiMode.All,
            NodeId = "node-raft",
            Rack = "rack-1",
            Masters = _cluster.Launcher.MasterAddresses,
            StateDir = _root.Combine("state"),
            MasterUnavailableRetry = Generous,
            Tls = _cluster.Launcher.ClientTls(FeitianK8s.Core.Security.ComponentRoles.CsiController),
        };
        await using var host = CsiDriverHost.Create(options, logging => logging.AddProvider(new XunitLoggerProvider(output, LogLevel.Information)));
        await host.StartAsync();
        using var client = new CsiClient(options.SocketPath);

        var capability = new VolumeCapability { Mount = new VolumeCapability.Types.MountVolume { FsType = "ext4" }, AccessMode = new() { Mode = Mode.SingleNodeWriter } };
        var before = await client.Controller.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-before", VolumeCapabilities = { capability } });

        // The node plugin registers its node in the background at start: wait until a publish finds it.
        var registeredBy = DateTime.UtcNow + Generous;
        while (true)
        {
            try
            {
                await client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = "pvc-before", NodeId = "node-raft", VolumeCapability = capability });
                break;
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.NotFound && DateTime.UtcNow < registeredBy)
            {
                await Task.Delay(200);
            }
        }
        await client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = "pvc-before", NodeId = "node-raft" });

        var killed = await RaftLeader.KillAsync(_cluster.Launcher, Generous);
        output.WriteLine($"master {killed} ({_cluster.Launcher.MasterAddresses[killed]}) was the leader and is down");

        var after = await client.Controller.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-after", VolumeCapabilities = { capability } });
        Assert.Equal("pvc-after", after.Volume.VolumeId);
        // Idempotent across the failover: the volume made before the kill is found, not made again.
        var again = await client.Controller.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-before", VolumeCapabilities = { capability } });
        Assert.Equal(before.Volume.VolumeId, again.Volume.VolumeId);

        await client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = "pvc-after", NodeId = "node-raft", VolumeCapability = capability });
        var published = await client.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "pvc-after" });
        Assert.Equal(["node-raft"], published.Status.PublishedNodeIds);
        await client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = "pvc-after", NodeId = "node-raft" });

        var listed = await client.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.Equal(["pvc-after", "pvc-before"], listed.Entries.Select(e => e.Volume.VolumeId).Order(StringComparer.Ordinal));
        await client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-after" });
        await client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-before" });
        Assert.Empty((await client.Controller.ListVolumesAsync(new ListVolumesRequest())).Entries);
    }
}
