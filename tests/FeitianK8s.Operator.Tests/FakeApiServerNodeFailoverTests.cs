using System.Text.Json.Nodes;
using FeitianK8s.Operator.Failover;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Net.Client;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>A REAL master (one chunk server) whose node leases the failover tests renew by hand, as node plugins would.</summary>
public sealed class NodeLeaseMasterFixture : IAsyncLifetime
{
    public SwitchableTestOutput Output { get; } = new();
    public TestCluster Cluster { get; private set; } = null!;
    public FeitianK8s.Proto.Master.Master.MasterClient Master { get; private set; } = null!;
    private GrpcChannel? _channel;

    public async Task InitializeAsync()
    {
        Cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(Output, LogLevel.Warning), chunkServers: 1, racks: 1);
        _channel = Cluster.Launcher.Channel(Cluster.Launcher.MasterAddress, FeitianK8s.Core.Security.ComponentRoles.CsiNode); // it renews node leases as a node plugin would
        Master = new FeitianK8s.Proto.Master.Master.MasterClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel?.Dispose();
        await Cluster.DisposeAsync();
    }
}

/// <summary>
/// Failover on node loss, operator side: the production path (OperatorHost with leader election, the
/// NodeFailoverController, GrpcNodeLeaseSource) against a FAKE Kubernetes API server on loopback (it plays
/// the kubelet by writing each node's Ready condition) and a REAL master judging node leases.
/// </summary>
public sealed class FakeApiServerNodeFailoverTests : IClassFixture<NodeLeaseMasterFixture>, IAsyncLifetime
{
    private const string Ns = "storage";
    private const string Nodes = "v1/nodes";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly NodeLeaseMasterFixture _fixture;
    private readonly ILoggerFactory _logs;
    private readonly List<OperatorHost> _hosts = [];
    private readonly CancellationTokenSource _renewing = new();
    private readonly List<Task> _renewals = [];
    private FakeKubeApiServer _api = null!;
    // Node names are unique per test: the master (and its leases) is shared by the class.
    private readonly string _id = Guid.NewGuid().ToString("N")[..6];

    public FakeApiServerNodeFailoverTests(NodeLeaseMasterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        fixture.Output.Current = output;
        _logs = XunitLoggerProvider.CreateFactory(output);
    }

    public async Task InitializeAsync()
    {
        _api = await FakeKubeApiServer.StartAsync(_logs);
        var cluster = (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(TestClusters.Minimal("prod", Ns)))!;
        cluster["metadata"] = new JsonObject { ["name"] = "prod" };
        cluster.Remove("status");
        _api.Create("feitian.io/v1alpha1/storageclusters", Ns, cluster);
    }

    public async Task DisposeAsync()
    {
        await _renewing.CancelAsync();
        await Task.WhenAll(_renewals);
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }
        await _api.DisposeAsync();
        _fixture.Output.Current = null;
        _logs.Dispose();
        _renewing.Dispose();
    }

    private string Name(string role) => $"{role}-{_id}";

    private void AddNode(string name, string ready, JsonArray? taints = null) =>
        _api.Create(Nodes, null, new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Node",
            ["metadata"] = new JsonObject { ["name"] = name },
            ["spec"] = taints is null ? new JsonObject() : new JsonObject { ["taints"] = taints },
            ["status"] = new JsonObject { ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready }) },
        });

    private void SetReady(string name, string ready) =>
        _api.Update(Nodes, null, name, o => o["status"] = new JsonObject { ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready }) });

    /// <summary>One renewal with a 1 s lease, then none: the lease expires a second later.</summary>
    private Task LetLeaseExpireAsync(string node) =>
        _fixture.Master.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = node, LeaseSeconds = 1 }).ResponseAsync;

    /// <summary>Renews a 10 s lease every second until the test ends, as a running node plugin does.</summary>
    private async Task KeepLeaseLiveAsync(string node)
    {
        await _fixture.Master.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = node, LeaseSeconds = 10 });
        _renewals.Add(Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await Task.Delay(1000, _renewing.Token);
                    await _fixture.Master.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = node, LeaseSeconds = 10 }, cancellationToken: _renewing.Token);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or Grpc.Core.RpcException { StatusCode: Grpc.Core.StatusCode.Cancelled })
            {
            }
        }));
    }

    private async Task WaitForLeaseAsync(string node, string state)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while ((await _fixture.Master.GetNodeAsync(new GetNodeRequest { Id = node })).Lease.State != state)
        {
            Assert.True(DateTime.UtcNow < deadline, $"lease of {node} never became {state}");
            await Task.Delay(100);
        }
    }

    private bool HasTaint(string node) =>
        _api.Get(Nodes, null, node)!["spec"]?["taints"]?.AsArray().Any(t => t!["key"]!.GetValue<string>() == NodeFailoverPlanner.OutOfServiceTaintKey
            && t["value"]!.GetValue<string>() == NodeFailoverPlanner.OutOfServiceTaintValue && t["effect"]!.GetValue<string>() == "NoExecute") ?? false;

    private bool HasAnnotation(string node) =>
        _api.Get(Nodes, null, node)!["metadata"]!["annotations"]?.AsObject().ContainsKey(NodeFailoverPlanner.TaintedAnnotation) ?? false;

    private async Task<OperatorHost> StartOperatorAsync(bool nodeFailover = true)
    {
        var host = new OperatorHost(
            new OperatorOptions
            {
                HttpPort = 0,
                Listen = "127.0.0.1",
                Identity = "operator-1",
                LeaseNamespace = "feitian-system",
                MasterAddress = _fixture.Cluster.Launcher.MasterAddress,
                NodeFailover = nodeFailover,
                TlsFiles = _fixture.Cluster.Launcher.TlsFiles(FeitianK8s.Core.Security.ComponentRoles.Operator),
            },
            new KubernetesClientConfiguration { Host = _api.Url }, _logs,
            failoverOptions: new NodeFailoverOptions { Period = TimeSpan.FromMilliseconds(200) });
        _hosts.Add(host);
        await host.StartAsync();
        return host;
    }

    private static async Task EventuallyAsync(Func<bool> probe, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!probe())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task NotReady_node_with_expired_lease_is_tainted_Ready_or_live_ones_never_and_the_taint_goes_when_the_node_recovers()
    {
        var dead = Name("dead");
        var readyExpired = Name("ready-expired");
        var notReadyLive = Name("notready-live");
        var foreign = Name("foreign");
        AddNode(dead, "Unknown");
        AddNode(readyExpired, "True");
        AddNode(notReadyLive, "False");
        AddNode(foreign, "True", new JsonArray(new JsonObject { ["key"] = NodeFailoverPlanner.OutOfServiceTaintKey, ["value"] = "nodeshutdown", ["effect"] = "NoExecute" }));
        await LetLeaseExpireAsync(dead);
        await LetLeaseExpireAsync(readyExpired);
        await KeepLeaseLiveAsync(notReadyLive);
        await KeepLeaseLiveAsync(foreign);
        await WaitForLeaseAsync(dead, "expired");
        await WaitForLeaseAsync(readyExpired, "expired");

        var host = await StartOperatorAsync();
        await EventuallyAsync(() => HasTaint(dead), $"the out-of-service taint on {dead}");
        Assert.True(HasAnnotation(dead));
        // One more whole pass after that one: the others are still untouched.
        Assert.DoesNotContain(await host.NodeFailover!.RunOnceAsync(CancellationToken.None), a => a.Node != dead);
        Assert.False(HasTaint(readyExpired), "a Ready node was tainted although its lease expired");
        Assert.False(HasTaint(notReadyLive), "a NotReady node with a live lease was tainted");
        Assert.True(HasTaint(foreign), "someone else's taint was removed");
        Assert.False(HasAnnotation(foreign));
        await EventuallyAsync(() => _api.List("v1/events", "default").Any(e => e["reason"]!.GetValue<string>() == "NodeOutOfService"
            && e["involvedObject"]!["name"]!.GetValue<string>() == dead), $"the NodeOutOfService event of {dead}");

        // Ready again, but its plugin has not renewed yet: still out of service.
        SetReady(dead, "True");
        Assert.DoesNotContain(await host.NodeFailover.RunOnceAsync(CancellationToken.None), a => a.Node == dead);
        Assert.True(HasTaint(dead));
        // The plugin renews: the operator's own taint and its annotation go.
        await KeepLeaseLiveAsync(dead);
        await EventuallyAsync(() => !HasTaint(dead), $"the taint to leave {dead}");
        Assert.False(HasAnnotation(dead));
        Assert.True(HasTaint(foreign));
    }

    [Fact]
    public async Task With_node_failover_off_the_operator_never_taints_a_lost_node()
    {
        var dead = Name("dead");
        AddNode(dead, "False");
        await LetLeaseExpireAsync(dead);
        await WaitForLeaseAsync(dead, "expired");

        var host = await StartOperatorAsync(nodeFailover: false);
        Assert.Null(host.NodeFailover);
        // The operator runs its other controllers (the cluster's objects appear) and leaves the node alone.
        await EventuallyAsync(() => _api.Get("apps/v1/statefulsets", Ns, "prod-master") is not null, "the StorageCluster to be reconciled");
        await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node") is not null, "the node plugin DaemonSet");
        Assert.False(HasTaint(dead));
        Assert.False(HasAnnotation(dead));
    }

    [Fact]
    public async Task A_cluster_with_nodeFailover_disabled_gives_its_node_plugins_no_lease_and_its_nodes_are_never_tainted()
    {
        _api.Update("feitian.io/v1alpha1/storageclusters", Ns, "prod", o => o["spec"]!["nodeFailover"] = new JsonObject { ["enabled"] = false });
        var dead = Name("dead");
        AddNode(dead, "False");
        await LetLeaseExpireAsync(dead);
        await WaitForLeaseAsync(dead, "expired");

        var host = await StartOperatorAsync();
        await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node") is not null, "the node plugin DaemonSet");
        var args = _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node")!["spec"]!["template"]!["spec"]!["containers"]![0]!["args"]!.AsArray()
            .Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal("0", args[args.IndexOf("--node-lease-seconds") + 1]);
        Assert.Empty(await host.NodeFailover!.RunOnceAsync(CancellationToken.None));
        Assert.False(HasTaint(dead));
    }
}
