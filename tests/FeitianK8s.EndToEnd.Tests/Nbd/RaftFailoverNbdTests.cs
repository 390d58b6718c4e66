using System.Diagnostics;
using System.Text.Json;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// Issue 9's main promise with the Raft masters: `feitian up --masters 3` under a steady 4 KiB
/// random NBD write load (queue depth 16, a FLUSH every 200 writes, 1 MiB chunks so chunks are
/// allocated all the time). The leader is killed with SIGKILL again and again; a follower takes
/// over, `up` restarts the killed member, and no NBD request may fail while every acknowledged
/// write reads back. The longest write pause is printed.
/// </summary>
public sealed class RaftFailoverNbdTests(ITestOutputHelper output)
{
    private const int Blocks = 16384; // 64 MiB volume of 4 KiB blocks
    private const string Volume = "raft";
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Leader_kill_9_three_times_with_three_masters_under_NBD_writes_no_write_fails_or_is_lost()
    {
        await using var cluster = await NbdCluster.StartAsync(output, "--masters", "3", "--chunk-size", "1MiB", "--master-wait", "60");
        await cluster.CreateVolumeAsync(Volume, "64MiB");
        await using var load = await NbdWriteLoad.StartAsync(cluster.Up.NbdPort, Volume, Blocks);
        await load.WaitForMoreAsync(500, Generous);

        const int kills = 3;
        for (var kill = 1; kill <= kills; kill++)
        {
            var (leader, member) = await WaitForLeaderAsync(cluster);
            var pid = cluster.Up.ServerPid(member) ?? throw new InvalidOperationException($"no process for {member}");
            var killedAt = Stopwatch.StartNew();
            var result = await ExternalTool.RunAsync(output, "kill", ["-KILL", pid.ToString()], TimeSpan.FromSeconds(10));
            Assert.True(result.Succeeded, $"kill -KILL {pid} failed: {result.StandardError}");
            while (FeitianUpProcess.IsRunning(pid))
            {
                Assert.True(killedAt.Elapsed < TimeSpan.FromSeconds(30), $"leader pid {pid} still runs 30 s after SIGKILL");
                await Task.Delay(20);
            }
            var (newLeader, _) = await WaitForLeaderAsync(cluster);
            output.WriteLine($"kill {kill}: leader {leader} ({member}, pid {pid}) killed; {newLeader} leads {killedAt.Elapsed.TotalSeconds:F1} s later");
            await load.WaitForMoreAsync(1000, Generous);
            Assert.Empty(load.Errors);
        }
        await load.StopAsync();
        output.WriteLine($"{load.Acknowledged} writes acknowledged; longest write pause {load.LongestPause.TotalSeconds:F2} s, longest single request {load.LongestRequest.TotalSeconds:F2} s");
        Assert.Empty(load.Errors);

        await using var reader = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, Volume);
        await load.VerifyAsync(reader, output);
    }

    /// <summary>The leader's address from `feitian status --json` and the member directory (master-i) it runs on.</summary>
    private static async Task<(string Address, string Member)> WaitForLeaderAsync(NbdCluster cluster)
    {
        var masters = ClusterFile.Read(cluster.DataDir).Masters;
        Assert.Equal(3, masters.Count);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var result = await cluster.Up.RunCliAsync("status", "--json");
            if (result.Succeeded)
            {
                using var status = JsonDocument.Parse(result.StandardOutput);
                var leader = status.RootElement.GetProperty("masters").EnumerateArray()
                    .FirstOrDefault(m => m.GetProperty("role").GetString() == "leader");
                if (leader.ValueKind == JsonValueKind.Object)
                {
                    var address = leader.GetProperty("address").GetString()!;
                    var index = masters.ToList().IndexOf(address);
                    Assert.True(index >= 0, $"leader {address} is not among the masters of cluster.json ({string.Join(", ", masters)})");
                    return (address, $"master-{index + 1}");
                }
            }
            Assert.True(deadline.Elapsed < Generous, $"no leader within {Generous}: {result.StandardOutput}{result.StandardError}");
            await Task.Delay(200);
        }
    }
}
