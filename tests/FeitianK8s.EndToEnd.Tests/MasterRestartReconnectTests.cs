using System.Diagnostics;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Issue 9 saw chunk servers fail heartbeats for over a minute after a master came back (gRPC's
/// default reconnect backoff grows to 120 s), while the master refused allocation with "no alive
/// chunk server". Real processes: the master is killed with SIGKILL, stays down long enough for
/// that backoff to grow, and is started again on its port.
/// </summary>
public sealed class MasterRestartReconnectTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Chunk_servers_heartbeat_a_master_restarted_after_20s_down_within_seconds_and_a_writer_waits_instead_of_failing()
    {
        await using var cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(output), chunkServers: 3, racks: 3, chunkSize: 1024 * 1024);
        var launcher = cluster.Launcher;
        var client = cluster.CreateClient();
        const string path = "/outage/writer.bin";
        await client.CreateAsync(path);
        await using var writer = await client.OpenForAppendAsync(path);
        await writer.AppendAsync(TestData.Random(512 * 1024, 1));

        var pid = launcher.Master.Process!.Pid;
        launcher.KillMaster();
        Assert.True(launcher.Master.Process.HasExited, $"master pid {pid} still runs after SIGKILL");
        await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => launcher.GetClusterStatusAsync());
        output.WriteLine($"master pid {pid} killed; it refuses connections");

        // Crossing into a new chunk needs the master: this append must wait for it, not fail.
        var crossing = writer.AppendAsync(TestData.Random(1024 * 1024, 2));
        await Task.Delay(TimeSpan.FromSeconds(20));
        Assert.False(crossing.IsCompleted, "an append that needs a new chunk finished while no master ran");

        await launcher.RestartMasterAsync();
        var restarted = Stopwatch.StartNew();
        await launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(90));
        var heartbeatsAfter = restarted.Elapsed;
        output.WriteLine($"every chunk server heartbeated the restarted master {heartbeatsAfter.TotalSeconds:F2} s after it started serving");
        Assert.True(heartbeatsAfter < TimeSpan.FromSeconds(5), $"chunk servers took {heartbeatsAfter} to report to the restarted master");

        Assert.Equal(512L * 1024, await crossing.WaitAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"the waiting append completed {restarted.Elapsed.TotalSeconds:F2} s after the restart");
        await writer.CloseAsync();
        var info = await client.StatAsync(path);
        Assert.Equal(512 * 1024 + 1024 * 1024, info!.Length);
        var back = new byte[info.Length];
        await using var reader = await client.OpenForReadAsync(path);
        Assert.Equal(back.Length, await reader.ReadAsync(0, back));
        Assert.Equal(TestData.Random(512 * 1024, 1), back[..(512 * 1024)]);
        Assert.Equal(TestData.Random(1024 * 1024, 2), back[(512 * 1024)..]);
    }
}
