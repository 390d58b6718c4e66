using System.Diagnostics;
using System.Net;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Core.Tests.Pangu;

/// <summary>
/// How <see cref="MasterConnection"/> treats refusals. A follower master cannot run on this branch
/// (Raft is another piece of issue 9), so the masters here are fake gRPC Master services on real
/// loopback sockets that answer exactly as the contract says a follower does: Unavailable with
/// trailers feitian-reason=not-leader and feitian-leader=http://HOST:PORT of the leader.
/// </summary>
public sealed class MasterConnectionTests : IAsyncLifetime
{
    private readonly List<WebApplication> _servers = [];
    private readonly List<GrpcChannelCache> _channels = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        _channels.ForEach(c => c.Dispose());
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_follower_naming_the_leader_sends_the_call_to_the_leader_at_once_and_later_calls_stay_there()
    {
        var leader = await StartAsync(new FakeMaster(_ => null));
        var leaderCalls = leader.Master;
        var follower = await StartAsync(new FakeMaster(_ => FeitianStatus.Error(StatusCode.Unavailable, ErrorReasons.NotLeader, "not the leader",
            (FeitianStatus.LeaderTrailer, leader.Address))));
        var connection = Connect([follower.Address], TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        var reply = await connection.CallAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None);
        Assert.Equal("served-by-leader", Assert.Single(reply.Volumes).Name);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"following the leader took {clock.Elapsed} (the wait is 30 s)");
        Assert.Equal(leader.Address, connection.CurrentAddress);
        Assert.Equal(1, follower.Master.Calls);

        await connection.CallAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None);
        Assert.Equal(1, follower.Master.Calls);
        Assert.Equal(2, leaderCalls.Calls);
    }

    [Fact]
    public async Task Without_a_named_leader_the_next_address_is_tried_and_real_errors_fail_at_once()
    {
        var refusing = await StartAsync(new FakeMaster(_ => FeitianStatus.Error(StatusCode.Unavailable, ErrorReasons.NotLeader, "no leader yet")));
        var invalid = await StartAsync(new FakeMaster(_ => FeitianStatus.Error(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, "bad name")));
        var connection = Connect([refusing.Address, invalid.Address], TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RpcException>(() =>
            connection.CallAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"a real error took {clock.Elapsed} (the wait is 30 s)");
        Assert.Equal(1, refusing.Master.Calls);
        Assert.Equal(1, invalid.Master.Calls);
    }

    [Fact]
    public async Task While_no_master_answers_a_call_waits_the_master_wait_and_then_fails_not_before()
    {
        var refusing = await StartAsync(new FakeMaster(_ => FeitianStatus.Error(StatusCode.Unavailable, ErrorReasons.NotLeader, "election")));
        var wait = TimeSpan.FromSeconds(3);
        var connection = Connect([refusing.Address], wait);

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RpcException>(() =>
            connection.CallAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.InRange(clock.Elapsed, wait, wait + TimeSpan.FromSeconds(10));
        Assert.True(refusing.Master.Calls > 3, $"only {refusing.Master.Calls} attempts in {clock.Elapsed}");
    }

    private MasterConnection Connect(IReadOnlyList<string> addresses, TimeSpan wait)
    {
        var options = new PanguClientOptions { MasterAddresses = addresses, MasterUnavailableRetry = wait };
        var channels = new GrpcChannelCache(options.MaxMessageBytes, NullLoggerFactory.Instance);
        _channels.Add(channels);
        return new MasterConnection(options, channels, NullLogger.Instance);
    }

    private async Task<(string Address, FakeMaster Master)> StartAsync(FakeMaster master)
    {
        var builder = ServerHostBuilder.CreateSlim();
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(master);
        var listeners = new GrpcAndHttpListeners();
        builder.WebHost.ConfigureKestrel(kestrel => listeners.Bind(kestrel, IPAddress.Loopback, 0, 0));
        var app = builder.Build();
        app.MapGrpcService<FakeMaster>();
        await app.StartAsync();
        _servers.Add(app);
        return (listeners.GrpcAddress, master);
    }

    /// <summary>Answers ListVolumes with one volume named "served-by-leader", or with the refusal <c>refuse</c> returns.</summary>
    public sealed class FakeMaster(Func<int, RpcException?> refuse) : Proto.Master.Master.MasterBase
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public override Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
        {
            var call = Interlocked.Increment(ref _calls);
            if (refuse(call) is { } error)
            {
                throw error;
            }
            var response = new ListVolumesResponse();
            response.Volumes.Add(new VolumeInfo { Name = "served-by-leader" });
            return Task.FromResult(response);
        }
    }
}
