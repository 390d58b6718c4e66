using FeitianK8s.Master.Cluster;
using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

/// <summary>Node leases (failover on node loss): soft renewals on the leader, the lease length replicated.</summary>
public sealed class NodeLeaseTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private readonly ManualClock _clock = new();
    private RunningMaster _master = null!;
    private Proto.Master.Master.MasterClient Client => _master.Client;

    public async Task InitializeAsync() => _master = await StartAsync();

    private Task<RunningMaster> StartAsync() =>
        RunningMaster.StartAsync(_dir.Path, output, o => new MasterOptions { DataDirectory = o.DataDirectory, HeartbeatTimeout = o.HeartbeatTimeout, Clock = _clock });

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public void A_lease_is_live_for_its_length_after_a_renewal_and_a_new_leader_counts_from_its_own_start()
    {
        var leases = new NodeLeases(_clock);
        var node = new NodeRecord { Id = "n1", LeaseSeconds = 15 };
        // Never renewed under this leader: counted from the start of the leadership.
        Assert.Equal(NodeLeases.Live, leases.Judge(node).State);
        _clock.Advance(TimeSpan.FromSeconds(16));
        Assert.Equal(NodeLeases.Expired, leases.Judge(node).State);
        leases.Renew("n1");
        Assert.Equal(NodeLeases.Live, leases.Judge(node).State);
        _clock.Advance(TimeSpan.FromSeconds(15));
        Assert.Equal(NodeLeases.Live, leases.Judge(node).State);
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(NodeLeases.Expired, leases.Judge(node).State);
        // A leader change may delay an expiry by one lease, never bring it forward.
        leases.Restart();
        Assert.Equal(NodeLeases.Live, leases.Judge(node).State);
        Assert.Equal(0, leases.Judge(node).LastRenewedUnixMs);
        // A node without a lease is never judged expired.
        _clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(NodeLeases.None, leases.Judge(new NodeRecord { Id = "n2" }).State);
    }

    [Fact]
    public async Task Renewal_registers_the_node_and_the_leader_reports_live_then_expired_leases()
    {
        var renewed = await Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "node-a", Rack = "rack-1", LeaseSeconds = 15 });
        Assert.Equal("live", renewed.State);
        await Client.RegisterNodeAsync(new RegisterNodeRequest { Id = "node-old", Rack = "rack-2" });
        var node = await Client.GetNodeAsync(new GetNodeRequest { Id = "node-a" });
        Assert.True(node.Registered);
        Assert.Equal("rack-1", node.Rack);
        Assert.Equal("live", node.Lease.State);
        Assert.Equal(15u, node.Lease.LeaseSeconds);

        _clock.Advance(TimeSpan.FromSeconds(16));
        var list = (await Client.ListNodeLeasesAsync(new ListNodeLeasesRequest())).Leases;
        Assert.Equal(["node-a", "node-old"], list.Select(l => l.Node));
        Assert.Equal("expired", list[0].State);
        Assert.Equal("none", list[1].State);
        Assert.Equal("expired", (await Client.GetNodeAsync(new GetNodeRequest { Id = "node-a" })).Lease.State);

        Assert.Equal("live", (await Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "node-a", LeaseSeconds = 15 })).State);
        // The rack of an earlier registration stays when a renewal names none.
        Assert.Equal("rack-1", (await Client.GetNodeAsync(new GetNodeRequest { Id = "node-a" })).Rack);
    }

    [Fact]
    public async Task Bad_renewals_are_refused_and_change_nothing()
    {
        await RpcAssert.Fails(StatusCode.InvalidArgument, null, () => Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "node-a", LeaseSeconds = 0 }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, null, () => Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "node-a", LeaseSeconds = 3601 }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, null, () => Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "", LeaseSeconds = 15 }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, null, () => Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = new string('x', 10_000), LeaseSeconds = 15 }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, null, () => Client.RegisterNodeAsync(new RegisterNodeRequest { Id = "node-a", LeaseSeconds = 100_000 }));
        Assert.Empty((await Client.ListNodeLeasesAsync(new ListNodeLeasesRequest())).Leases);
        await RpcAssert.Fails(StatusCode.NotFound, null, () => Client.GetNodeAsync(new GetNodeRequest { Id = "node-a" }));
    }

    [Fact]
    public async Task The_lease_length_survives_a_master_restart_and_the_new_leader_waits_a_whole_lease_before_expiry()
    {
        await Client.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = "node-a", LeaseSeconds = 20 });
        _clock.Advance(TimeSpan.FromSeconds(30));
        await _master.DisposeAsync();
        _master = await StartAsync();

        // The restarted master heard no renewal: the lease counts from its leadership.
        var lease = (await Client.ListNodeLeasesAsync(new ListNodeLeasesRequest())).Leases.Single();
        Assert.Equal(20u, lease.LeaseSeconds);
        Assert.Equal("live", lease.State);
        _clock.Advance(TimeSpan.FromSeconds(21));
        Assert.Equal("expired", (await Client.ListNodeLeasesAsync(new ListNodeLeasesRequest())).Leases.Single().State);
    }
}
