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
/// write reads back. The longest write pause is printed. The same with a follower killed, with a
/// member's data directory wiped (it rejoins empty and catches up by snapshot), and with every
/// master killed at once.
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

    [Fact]
    public async Task A_follower_killed_with_kill_9_under_NBD_writes_no_write_fails_or_is_lost() =>
        await ExpectNoWriteFailsUnderLoadAsync(async (cluster, load) =>
        {
            var (_, leaderMember) = await WaitForLeaderAsync(cluster);
            var follower = FollowerOf(leaderMember);
            var pid = await ExpectKillAsync(cluster, follower);
            var newPid = await ExpectRestartAsync(cluster, follower, pid);
            output.WriteLine($"follower {follower} (pid {pid}) killed; `up` restarted it as pid {newPid}; writes paused at most {load.LongestPause.TotalSeconds:F2} s so far");
            await ExpectCaughtUpAsync(cluster);
        });

    [Fact]
    public async Task A_member_whose_data_directory_is_wiped_rejoins_empty_under_NBD_writes_no_write_fails_or_is_lost() =>
        await ExpectNoWriteFailsUnderLoadAsync(async (cluster, load) =>
        {
            var (_, leaderMember) = await WaitForLeaderAsync(cluster);
            var follower = FollowerOf(leaderMember);
            var dir = Path.Combine(cluster.DataDir, follower);
            var pid = cluster.Up.ServerPid(follower) ?? throw new InvalidOperationException($"no process for {follower}");
            // Frozen first, so `up` cannot restart it before its disk is gone; then the disk is "replaced".
            await ExpectSignal("STOP", pid);
            Directory.Move(dir, dir + ".lost");
            Directory.CreateDirectory(dir);
            await ExpectSignal("KILL", pid);
            var newPid = await ExpectRestartAsync(cluster, follower, pid);
            output.WriteLine($"{follower} (pid {pid}) killed with its data directory wiped; `up` restarted it empty as pid {newPid}");
            await ExpectCaughtUpAsync(cluster);
            Assert.True(Directory.EnumerateFileSystemEntries(dir).Any(), $"{dir} is still empty after the member rejoined");
        });

    [Fact]
    public async Task All_three_masters_killed_at_once_under_NBD_writes_no_write_fails_or_is_lost() =>
        await ExpectNoWriteFailsUnderLoadAsync(async (cluster, load) =>
        {
            var pids = Enumerable.Range(1, 3).Select(i => cluster.Up.ServerPid($"master-{i}") ?? throw new InvalidOperationException($"no process for master-{i}")).ToList();
            await ExpectSignal("KILL", [.. pids]);
            for (var i = 1; i <= 3; i++)
            {
                await ExpectRestartAsync(cluster, $"master-{i}", pids[i - 1]);
            }
            var (leader, _) = await WaitForLeaderAsync(cluster);
            output.WriteLine($"masters {string.Join(", ", pids)} killed at once; `up` restarted all three; {leader} leads");
            await ExpectCaughtUpAsync(cluster);
        });

    /// <summary>`up --masters 3` under the NBD write load; <paramref name="fault"/> runs once the load runs; then no error, all acknowledged data intact.</summary>
    private async Task ExpectNoWriteFailsUnderLoadAsync(Func<NbdCluster, NbdWriteLoad, Task> fault)
    {
        await using var cluster = await NbdCluster.StartAsync(output, "--masters", "3", "--chunk-size", "1MiB", "--master-wait", "60");
        await cluster.CreateVolumeAsync(Volume, "64MiB");
        await using var load = await NbdWriteLoad.StartAsync(cluster.Up.NbdPort, Volume, Blocks);
        await load.WaitForMoreAsync(500, Generous);
        var pauseBefore = load.LongestPause;
        await fault(cluster, load);
        await load.WaitForMoreAsync(1000, Generous);
        Assert.Empty(load.Errors);
        await load.StopAsync();
        output.WriteLine($"{load.Acknowledged} writes acknowledged; longest write pause {load.LongestPause.TotalSeconds:F2} s ({pauseBefore.TotalSeconds:F2} s before the fault), longest single request {load.LongestRequest.TotalSeconds:F2} s");
        Assert.Empty(load.Errors);
        await using var reader = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, Volume);
        await load.VerifyAsync(reader, output);
    }

    private static string FollowerOf(string leaderMember) => leaderMember == "master-1" ? "master-2" : "master-1";

    private async Task<int> ExpectKillAsync(NbdCluster cluster, string member)
    {
        var pid = cluster.Up.ServerPid(member) ?? throw new InvalidOperationException($"no process for {member}");
        await ExpectSignal("KILL", pid);
        return pid;
    }

    private async Task ExpectSignal(string signal, params int[] pids)
    {
        var result = await ExternalTool.RunAsync(output, "kill", [$"-{signal}", .. pids.Select(p => p.ToString())], TimeSpan.FromSeconds(10));
        Assert.True(result.Succeeded, $"kill -{signal} {string.Join(" ", pids)} failed: {result.StandardError}");
    }

    /// <summary>Waits until <paramref name="oldPid"/> is gone and `up` runs <paramref name="member"/> again; returns the new pid.</summary>
    private static async Task<int> ExpectRestartAsync(NbdCluster cluster, string member, int oldPid)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (!FeitianUpProcess.IsRunning(oldPid) && cluster.Up.ServerPid(member) is { } pid && pid != oldPid)
            {
                return pid;
            }
            Assert.True(deadline.Elapsed < Generous, $"`up` did not restart {member} (pid {oldPid}) within {Generous}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until `feitian status --json` shows a leader and every master a follower or leader with lag 0.</summary>
    private async Task ExpectCaughtUpAsync(NbdCluster cluster)
    {
        var deadline = Stopwatch.StartNew();
        var last = "";
        while (true)
        {
            var result = await cluster.Up.RunCliAsync("status", "--json");
            if (result.Succeeded)
            {
                using var status = JsonDocument.Parse(result.StandardOutput);
                var masters = status.RootElement.GetProperty("masters").EnumerateArray().ToList();
                last = string.Join("; ", masters.Select(m => m.ToString()));
                if (masters.Count == 3 && masters.Count(m => m.GetProperty("role").GetString() == "leader") == 1
                    && masters.All(m => m.GetProperty("role").GetString() is "leader" or "follower"
                        && m.TryGetProperty("lag", out var lag) && lag.ValueKind == JsonValueKind.Number && lag.GetUInt64() <= 16))
                {
                    output.WriteLine($"every master caught up: {last}");
                    return;
                }
            }
            Assert.True(deadline.Elapsed < Generous, $"masters did not catch up within {Generous}: {last}{result.StandardError}");
            await Task.Delay(500);
        }
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
