using System.Diagnostics;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Grpc.Net.Client;

namespace FeitianK8s.Testing;

/// <summary>Finds the leading master of a local Raft group and kills it, proving it is gone.</summary>
public static class RaftLeader
{
    /// <summary>Index (from 0) of the master that reports itself leader; waits up to <paramref name="timeout"/>.</summary>
    public static async Task<int> FindAsync(LocalClusterLauncher cluster, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            for (var i = 0; i < cluster.Masters.Count; i++)
            {
                if (!cluster.Masters[i].IsRunning)
                {
                    continue;
                }
                try
                {
                    using var channel = cluster.Channel(cluster.MasterAddresses[i]);
                    var state = await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetMasterStateAsync(new GetMasterStateRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                    if (state.Role == "leader")
                    {
                        return i;
                    }
                }
                catch (RpcException)
                {
                    // Not answering right now: ask the others.
                }
            }
            if (deadline.Elapsed > timeout)
            {
                throw new TimeoutException($"no master of {string.Join(", ", cluster.MasterAddresses)} reported itself leader within {timeout}");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>SIGKILLs the leader and proves it is down (process exited, ports refuse); returns its index.</summary>
    public static async Task<int> KillAsync(LocalClusterLauncher cluster, TimeSpan timeout)
    {
        var leader = await FindAsync(cluster, timeout);
        cluster.KillMaster(leader);
        await ServerFaults.AssertServerIsDownAsync(cluster.Masters[leader]);
        return leader;
    }
}
