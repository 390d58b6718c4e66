using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

/// <summary>Raft among in-process masters on loopback with real sockets and data directories.</summary>
public sealed class RaftTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ThreeMastersElectALeaderReplicateAndFollowersRefuseNamingTheLeader()
    {
        await using var group = await RaftGroup.StartAsync(output);
        var leader = await group.WaitForLeaderAsync();
        var client = group[leader]!.Client;
        for (var i = 0; i < 20; i++)
        {
            await client.CreateFileAsync(new CreateFileRequest { Path = $"/raft/{i}", Replicas = 1 });
        }
        var volume = await client.CreateVolumeAsync(new CreateVolumeRequest { Name = "v1", SizeBytes = 1 << 20, Replicas = 1 });
        var lease = await client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "v1", Holder = "node-a" });
        Assert.Equal(1UL, lease.Epoch);

        for (var i = 0; i < 3; i++)
        {
            if (i == leader)
            {
                continue;
            }
            var follower = group[i]!;
            // Replicated: the follower applies the same commands (its local state converges).
            await WaitUntil(() => follower.Host.Metadata.ReadLocal(s => s.FileCount) == 20 && follower.Host.Metadata.ReadLocal(s => s.VolumeCount) == 1);
            // Refused: a mutation and a linearizable read, with the leader's address.
            var refused = await Assert.ThrowsAsync<RpcException>(() => follower.Client.CreateFileAsync(new CreateFileRequest { Path = "/x", Replicas = 1 }).ResponseAsync);
            Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
            Assert.Equal(ErrorReasons.NotLeader, FeitianStatus.ReasonOf(refused));
            await WaitUntil(() => follower.Host.Metadata.LeaderAddress is not null);
            refused = await Assert.ThrowsAsync<RpcException>(() => follower.Client.StatVolumeAsync(new StatVolumeRequest { Name = "v1" }).ResponseAsync);
            Assert.True(FeitianStatus.IsNotLeader(refused));
            Assert.Equal(group.GrpcAddresses[leader], FeitianStatus.LeaderOf(refused));
            var state = await follower.Client.GetMasterStateAsync(new GetMasterStateRequest());
            Assert.Equal("follower", state.Role);
            Assert.Equal(group.GrpcAddresses[leader], state.LeaderAddress);
        }
        var leaderState = await client.GetMasterStateAsync(new GetMasterStateRequest());
        Assert.Equal("leader", leaderState.Role);
        Assert.True(leaderState.Term >= 1);
        Assert.True(leaderState.CommitIndex >= 23);
        Assert.Equal(0, group[leader]!.Host.Metadata.ReadLocal(s => s.FileCount) - 20);
    }

    internal static async Task WaitUntilAsync(Func<Task<bool>> condition, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("condition not met within the deadline");
            }
            await Task.Delay(100);
        }
    }

    internal static async Task WaitUntil(Func<bool> condition, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("condition not met within the deadline");
            }
            await Task.Delay(50);
        }
    }
}
