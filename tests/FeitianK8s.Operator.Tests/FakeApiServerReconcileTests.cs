using System.Net;
using System.Text.Json.Nodes;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Testing;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// The operator's production code path (OperatorHost: KubernetesClient, watches, work queue,
/// leader election, reconciler) against a FAKE Kubernetes API server on loopback. The master
/// address points at a closed local port, so the master is really unreachable here.
/// </summary>
public sealed class FakeApiServerReconcileTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Ns = "storage";
    private const string LeaseNs = "feitian-system";
    private const string RoleBindings = "rbac.authorization.k8s.io/v1/rolebindings";
    private const string Clusters = "feitian.io/v1alpha1/storageclusters";
    private const string StatefulSets = "apps/v1/statefulsets";
    private const string DaemonSets = "apps/v1/daemonsets";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly ILoggerFactory _logs = XunitLoggerProvider.CreateFactory(output);
    private readonly CompletedWorkCounter _work = new();
    private FakeKubeApiServer _api = null!;
    private readonly List<OperatorHost> _hosts = [];

    public async Task InitializeAsync()
    {
        _logs.AddProvider(_work);
        _api = await FakeKubeApiServer.StartAsync(_logs);
        foreach (var node in TestClusters.ThreeRacks())
        {
            _api.Create("v1/nodes", null, ToJson(node));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var h in _hosts)
        {
            await h.DisposeAsync();
        }
        await _api.DisposeAsync();
        _logs.Dispose();
    }

    private async Task<OperatorHost> StartOperatorAsync(string identity = "operator-1", IMasterStatusSource? masters = null, int maxRetries = 12)
    {
        var options = new OperatorOptions
        {
            HttpPort = 0,
            Listen = "127.0.0.1",
            Identity = identity,
            LeaseNamespace = LeaseNs,
            MasterAddress = "127.0.0.1:1",
        };
        var host = new OperatorHost(options, new KubernetesClientConfiguration { Host = _api.Url }, _logs, masters,
            new ReconcilerOptions
            {
                DeletionBlockedRetry = TimeSpan.FromMilliseconds(500),
                NotReadyRetry = TimeSpan.FromMilliseconds(500),
                RolloutRetry = TimeSpan.FromMilliseconds(300),
                CsiLeaseNamespace = LeaseNs,
            },
            new ControllerOptions { Workers = 2, MaxRetries = maxRetries, ResyncPeriod = TimeSpan.FromSeconds(2), RetryBaseDelay = TimeSpan.FromMilliseconds(50), RetryMaxDelay = TimeSpan.FromSeconds(1) });
        _hosts.Add(host);
        await host.StartAsync();
        return host;
    }

    private static JsonObject ToJson(object o) => (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(o))!;

    private void ApplyCluster(string name = "prod", Action<JsonObject>? change = null)
    {
        var obj = ToJson(TestClusters.Minimal(name, Ns));
        obj["metadata"] = new JsonObject { ["name"] = name };
        obj.Remove("status");
        change?.Invoke(obj);
        _api.Create(Clusters, Ns, obj);
    }

    private static async Task<T> EventuallyAsync<T>(Func<T?> probe, string what) where T : class
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } value)
            {
                return value;
            }
            await Task.Delay(50);
        }
        throw new TimeoutException($"timed out waiting for {what}");
    }

    private static Task EventuallyAsync(Func<bool> probe, string what) => EventuallyAsync(() => probe() ? "" : null, what);

    /// <summary>Plays the StatefulSet and DaemonSet controllers: reports every desired pod ready.</summary>
    private void MarkWorkloadsReady()
    {
        foreach (var sts in _api.List(StatefulSets, Ns))
        {
            var name = sts["metadata"]!["name"]!.GetValue<string>();
            var replicas = sts["spec"]!["replicas"]!.GetValue<int>();
            _api.Update(StatefulSets, Ns, name, o => o["status"] = new JsonObject { ["replicas"] = replicas, ["readyReplicas"] = replicas });
        }
        foreach (var ds in _api.List(DaemonSets, Ns))
        {
            var name = ds["metadata"]!["name"]!.GetValue<string>();
            _api.Update(DaemonSets, Ns, name, o => o["status"] = new JsonObject
            {
                ["desiredNumberScheduled"] = 2, ["currentNumberScheduled"] = 2, ["numberReady"] = 2, ["numberMisscheduled"] = 0,
            });
        }
    }

    private IEnumerable<string> EventReasons() =>
        _api.List("v1/events", Ns).Select(e => e["reason"]!.GetValue<string>());

    /// <summary>Plays the DaemonSet controller for the OnDelete volume-host DaemonSet: a pod on NODE from its current template, ready.</summary>
    private void CreateVolumeHostPod(string name, string node, string templateHash)
    {
        var ds = _api.Get(DaemonSets, Ns, "prod-volume-host")!;
        _api.Create("v1/pods", Ns, new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Pod",
            ["metadata"] = new JsonObject
            {
                ["name"] = name,
                ["labels"] = ds["spec"]!["template"]!["metadata"]!["labels"]!.DeepClone(),
                ["annotations"] = new JsonObject { [Desired.Names.TemplateHashAnnotation] = templateHash },
            },
            ["spec"] = new JsonObject { ["nodeName"] = node, ["containers"] = new JsonArray() },
            ["status"] = new JsonObject { ["phase"] = "Running", ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = "True" }) },
        });
    }

    [Fact]
    public async Task Outdated_volume_hosts_are_replaced_one_node_at_a_time_and_only_on_nodes_without_volume_attachments()
    {
        const string Attachments = "storage.k8s.io/v1/volumeattachments";
        await StartOperatorAsync();
        ApplyCluster();
        var ds = await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-volume-host"), "volume-host daemonset");
        var current = ds["spec"]!["template"]!["metadata"]!["annotations"]![Desired.Names.TemplateHashAnnotation]!.GetValue<string>();
        CreateVolumeHostPod("vh-a1", "node-a1", "old");
        CreateVolumeHostPod("vh-b1", "node-b1", "old");
        _api.Create(Attachments, null, new JsonObject
        {
            ["apiVersion"] = "storage.k8s.io/v1",
            ["kind"] = "VolumeAttachment",
            ["metadata"] = new JsonObject { ["name"] = "csi-b1" },
            ["spec"] = new JsonObject { ["attacher"] = Desired.Names.CsiDriverName, ["nodeName"] = "node-b1", ["source"] = new JsonObject { ["persistentVolumeName"] = "pv-1" } },
        });

        // node-a1 holds no volume: its volume host goes; the DaemonSet controller brings the new one.
        await EventuallyAsync(() => _api.Get("v1/pods", Ns, "vh-a1") is null, "vh-a1 replaced");
        Assert.NotNull(_api.Get("v1/pods", Ns, "vh-b1"));
        CreateVolumeHostPod("vh-a1-new", "node-a1", current);
        // More passes change nothing while node-b1 holds a volume.
        var passes = _work.Count("Reconcile");
        await _work.WaitForCountAsync("Reconcile", null, passes + 3, Timeout);
        Assert.NotNull(_api.Get("v1/pods", Ns, "vh-b1"));

        // kubectl drain: the pod goes, the kubelet unstages, the attacher deletes the attachment.
        _api.Delete(Attachments, null, "csi-b1");
        await EventuallyAsync(() => _api.Get("v1/pods", Ns, "vh-b1") is null, "vh-b1 replaced after the drain");
        Assert.NotNull(_api.Get("v1/pods", Ns, "vh-a1-new"));
        await EventuallyAsync(() => EventReasons().Count(r => r == "UpgradingVolumeHost") == 2, "two UpgradingVolumeHost events");
    }

    [Fact]
    public async Task Create_makes_every_object_appear_with_finalizer_owner_references_and_status()
    {
        await StartOperatorAsync();
        ApplyCluster();

        await EventuallyAsync(() => _api.Get("storage.k8s.io/v1/storageclasses", null, "feitian"), "storage class");
        var sts = _api.Get(StatefulSets, Ns, "prod-master")!;
        Assert.Equal(3, sts["spec"]!["replicas"]!.GetValue<int>());
        var cluster = _api.Get(Clusters, Ns, "prod")!;
        Assert.Equal(cluster["metadata"]!["uid"]!.GetValue<string>(), sts["metadata"]!["ownerReferences"]![0]!["uid"]!.GetValue<string>());
        Assert.Contains("feitian.io/storagecluster-protection", cluster["metadata"]!["finalizers"]!.AsArray().Select(f => f!.GetValue<string>()));
        var daemonSets = _api.List(DaemonSets, Ns).Select(d => d["metadata"]!["name"]!.GetValue<string>()).Order().ToList();
        Assert.Equal(["prod-chunkserver-rack-a", "prod-chunkserver-rack-b", "prod-chunkserver-rack-c", "prod-csi-node", "prod-volume-host"], daemonSets);
        // The sidecars' Leases: a RoleBinding to the chart's namespaced Role, in the operator's namespace.
        var leases = _api.Get(RoleBindings, LeaseNs, "feitian-csi-leader-election-storage-prod")!;
        Assert.Equal(("Role", "feitian-csi-leader-election"), (leases["roleRef"]!["kind"]!.GetValue<string>(), leases["roleRef"]!["name"]!.GetValue<string>()));
        Assert.Equal(("prod-csi", Ns), (leases["subjects"]![0]!["name"]!.GetValue<string>(), leases["subjects"]![0]!["namespace"]!.GetValue<string>()));
        Assert.NotNull(_api.Get("apps/v1/deployments", Ns, "prod-csi-controller"));
        Assert.NotNull(_api.Get("policy/v1/poddisruptionbudgets", Ns, "prod-master"));
        // The web console through the API server: the headless Service's port "http", the leader named by --advertise-http.
        var masterService = _api.Get("v1/services", Ns, "prod-master")!;
        Assert.Contains(masterService["spec"]!["ports"]!.AsArray(), p => p!["name"]!.GetValue<string>() == "http" && p["port"]!.GetValue<int>() == 9001);
        var masterArgs = sts["spec"]!["template"]!["spec"]!["containers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal($"http://$(POD_NAME).prod-master.{Ns}.svc:9001", masterArgs[masterArgs.IndexOf("--advertise-http") + 1]);
        Assert.NotNull(_api.Get("storage.k8s.io/v1/csidrivers", null, "feitian.csi.k8s.io"));
        Assert.NotNull(_api.Get("rbac.authorization.k8s.io/v1/clusterrolebindings", null, "feitian-csi-node-storage-prod"));
        // No snapshot CRDs installed in this fake cluster: no VolumeSnapshotClass (it could not be stored).
        Assert.Null(_api.Get("snapshot.storage.k8s.io/v1/volumesnapshotclasses", null, "feitian"));

        var creating = await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod") is { } c && c["status"]?["masters"]?["summary"]?.GetValue<string>() == "0/3" ? c : null, "status of a creating cluster");
        Assert.Equal("Creating", creating["status"]!["phase"]!.GetValue<string>());

        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-csi-node"), "daemonsets");
        MarkWorkloadsReady();
        var ready = await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod") is { } c
            && c["status"]?["conditions"]?.AsArray().Any(x => x!["type"]!.GetValue<string>() == "Ready" && x["status"]!.GetValue<string>() == "True") == true ? c : null, "Ready");
        Assert.Equal("3/3", ready["status"]!["masters"]!["summary"]!.GetValue<string>());
        Assert.Equal("6/6", ready["status"]!["chunkServers"]!["summary"]!.GetValue<string>());
        Assert.Equal(1, ready["status"]!["observedGeneration"]!.GetValue<long>());
        // The master is unreachable in this test, and the status says so.
        Assert.Equal("Degraded", ready["status"]!["phase"]!.GetValue<string>());
        await EventuallyAsync(() => EventReasons().Contains("ClusterReady"), "ClusterReady event");
    }

    [Fact]
    public async Task Status_is_written_only_when_it_changes()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-csi-node"), "daemonsets");
        MarkWorkloadsReady();
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod")?["status"]?["masters"]?["summary"]?.GetValue<string>() == "3/3", "status");

        // Counted, not timed: first let the status settle (a full reconcile that starts after the
        // version was read and leaves it as it was), then require several more full reconciles
        // (resyncs and requeues) that leave it unchanged.
        var before = await SettledVersionAsync("prod");
        var reconciles = _work.Count("Reconcile", $"{Ns}/prod");
        await _work.WaitForCountAsync("Reconcile", $"{Ns}/prod", reconciles + 4, Timeout);
        Assert.Equal(before, ResourceVersion("prod"));
    }

    private string ResourceVersion(string name) => _api.Get(Clusters, Ns, name)!["metadata"]!["resourceVersion"]!.GetValue<string>();

    /// <summary>The cluster's resourceVersion once a whole reconcile (begun after reading it) has left it unchanged.</summary>
    private async Task<string> SettledVersionAsync(string name)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var version = ResourceVersion(name);
            // Two more completions: the first may be a reconcile already running when the version was read.
            await _work.WaitForCountAsync("Reconcile", $"{Ns}/{name}", _work.Count("Reconcile", $"{Ns}/{name}") + 2, Timeout);
            if (ResourceVersion(name) == version)
            {
                return version;
            }
            Assert.True(DateTime.UtcNow < deadline, $"the status of {name} never settled within {Timeout}");
        }
    }

    [Fact]
    public async Task Spec_change_updates_the_objects()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters");
        // The DaemonSets are created after the StatefulSet in the same reconcile: wait for the one compared below.
        var chunkBefore = (await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-chunkserver-rack-a"), "rack-a daemonset"))["metadata"]!["resourceVersion"]!.GetValue<string>();

        _api.Update(Clusters, Ns, "prod", c =>
        {
            c["spec"]!["masters"] = new JsonObject { ["replicas"] = 5 };
            c["spec"]!["images"] = new JsonObject { ["chunkServer"] = "example.com/feitian/chunkserver:2" };
        });

        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master")?["spec"]?["replicas"]?.GetValue<int>() == 5, "5 masters");
        var ds = await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-chunkserver-rack-a") is { } d
            && d["spec"]!["template"]!["spec"]!["containers"]![0]!["image"]!.GetValue<string>() == "example.com/feitian/chunkserver:2" ? d : null, "new image");
        Assert.NotEqual(chunkBefore, ds["metadata"]!["resourceVersion"]!.GetValue<string>());
        Assert.Equal("3", _api.Get("policy/v1/poddisruptionbudgets", Ns, "prod-master")!["spec"]!["minAvailable"]!.ToString());
    }

    [Fact]
    public async Task A_new_rack_gets_a_daemonset_and_a_vanished_rack_loses_it()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-chunkserver-rack-c"), "rack-c");
        _api.Create("v1/nodes", null, ToJson(TestClusters.Node("node-d1", "rack-d")));
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-chunkserver-rack-d"), "rack-d daemonset");
        _api.Delete("v1/nodes", null, "node-c1");
        _api.Delete("v1/nodes", null, "node-c2");
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-chunkserver-rack-c") is null, "rack-c daemonset gone");
        await EventuallyAsync(() => EventReasons().Contains("RackRemoved"), "RackRemoved event");
        // Exactly one chunk-server DaemonSet per rack that still has nodes.
        var chunkServerSets = _api.List(DaemonSets, Ns).Select(d => d["metadata"]!["name"]!.GetValue<string>())
            .Where(n => n.StartsWith("prod-chunkserver-", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["prod-chunkserver-rack-a", "prod-chunkserver-rack-b", "prod-chunkserver-rack-d"], chunkServerSets);
    }

    /// <summary>
    /// Every node the cluster can schedule on gets the node plugin, whatever its zone or taints,
    /// through the reconcile against the fake API server; which nodes a DaemonSet covers is the
    /// DaemonSet controller's rule, emulated (<see cref="DaemonSetSchedulingEmulation"/>).
    /// </summary>
    [Fact]
    public async Task The_node_plugin_daemonset_covers_every_node_including_zones_without_storage()
    {
        var edge = TestClusters.Node("edge-1", "zone-without-storage", storage: false);
        var bare = TestClusters.Node("bare-1", null, storage: false);
        var controlPlane = TestClusters.Node("control-plane-1", null, storage: false);
        controlPlane.Spec = new k8s.Models.V1NodeSpec { Taints = [new k8s.Models.V1Taint { Key = "node-role.kubernetes.io/control-plane", Effect = "NoSchedule" }] };
        var draining = TestClusters.Node("gpu-1", "zone-without-storage", storage: false);
        draining.Spec = new k8s.Models.V1NodeSpec { Taints = [new k8s.Models.V1Taint { Key = "nvidia.com/gpu", Value = "true", Effect = "NoExecute" }] };
        foreach (var node in new[] { edge, bare, controlPlane, draining })
        {
            _api.Create("v1/nodes", null, ToJson(node));
        }
        await StartOperatorAsync();
        ApplyCluster();
        var json = await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-csi-node"), "node plugin daemonset");
        var nodePlugin = KubernetesJson.Deserialize<k8s.Models.V1DaemonSet>(json.ToJsonString());
        var nodes = _api.List("v1/nodes").Select(n => KubernetesJson.Deserialize<k8s.Models.V1Node>(n.ToJsonString())).ToList();
        Assert.Equal(11, nodes.Count);
        Assert.All(nodes, n => Assert.True(DaemonSetSchedulingEmulation.RunsOn(nodePlugin, n), $"no node plugin on {n.Metadata.Name}"));
        // Chunk servers stay per rack on storage nodes.
        var chunkA = KubernetesJson.Deserialize<k8s.Models.V1DaemonSet>(_api.Get(DaemonSets, Ns, "prod-chunkserver-rack-a")!.ToJsonString());
        Assert.Equal(["node-a1", "node-a2"], nodes.Where(n => DaemonSetSchedulingEmulation.RunsOn(chunkA, n)).Select(n => n.Metadata.Name).Order());
    }

    /// <summary>
    /// An operator upgrade from per-rack node plugin DaemonSets: the one for all nodes appears and
    /// the old ones this operator owns are deleted; the VolumeSnapshotClass an earlier version made
    /// is kept and brought to the desired state, now that the driver serves snapshots.
    /// </summary>
    [Fact]
    public async Task An_upgrade_replaces_the_per_rack_node_plugin_daemonsets_and_keeps_the_snapshot_class()
    {
        _api.Create("apiextensions.k8s.io/v1/customresourcedefinitions", null, new JsonObject
        {
            ["apiVersion"] = "apiextensions.k8s.io/v1", ["kind"] = "CustomResourceDefinition",
            ["metadata"] = new JsonObject { ["name"] = "volumesnapshotclasses.snapshot.storage.k8s.io" },
        });
        _api.Create("snapshot.storage.k8s.io/v1/volumesnapshotclasses", null, new JsonObject
        {
            ["apiVersion"] = "snapshot.storage.k8s.io/v1", ["kind"] = "VolumeSnapshotClass", ["driver"] = "feitian.csi.k8s.io", ["deletionPolicy"] = "Delete",
            ["metadata"] = new JsonObject { ["name"] = "feitian", ["labels"] = new JsonObject { ["feitian.io/owner"] = $"{Ns}.prod" } },
        });
        foreach (var old in new[] { "prod-csi-node-rack-a", "prod-csi-node-unracked" })
        {
            _api.Create(DaemonSets, Ns, new JsonObject
            {
                ["apiVersion"] = "apps/v1", ["kind"] = "DaemonSet",
                ["metadata"] = new JsonObject
                {
                    ["name"] = old,
                    ["labels"] = new JsonObject
                    {
                        ["feitian.io/cluster"] = "prod", ["app.kubernetes.io/managed-by"] = "feitian-operator", ["app.kubernetes.io/component"] = "csi-node",
                    },
                },
                ["spec"] = new JsonObject(),
            });
        }
        // Someone else's DaemonSet in the namespace is not ours to delete.
        _api.Create(DaemonSets, Ns, new JsonObject { ["apiVersion"] = "apps/v1", ["kind"] = "DaemonSet", ["metadata"] = new JsonObject { ["name"] = "prod-csi-node-mine" }, ["spec"] = new JsonObject() });
        Assert.NotNull(_api.Get(DaemonSets, Ns, "prod-csi-node-rack-a"));
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-csi-node"), "node plugin daemonset");
        await EventuallyAsync(() => _api.Get(DaemonSets, Ns, "prod-csi-node-rack-a") is null && _api.Get(DaemonSets, Ns, "prod-csi-node-unracked") is null, "old node daemonsets gone");
        await EventuallyAsync(() => EventReasons().Contains("NodePluginReplaced"), "NodePluginReplaced event");
        var snapshotClass = await EventuallyAsync(() => _api.Get("snapshot.storage.k8s.io/v1/volumesnapshotclasses", null, "feitian") is { } c
            && c["metadata"]?["labels"]?["app.kubernetes.io/component"]?.GetValue<string>() == "storage-class" ? c : null, "snapshot class reconciled");
        Assert.Equal("feitian.csi.k8s.io", snapshotClass["driver"]!.GetValue<string>());
        Assert.Equal("Delete", snapshotClass["deletionPolicy"]!.GetValue<string>());
        Assert.NotNull(_api.Get(DaemonSets, Ns, "prod-csi-node-mine"));
    }

    [Fact]
    public async Task Delete_with_volumes_is_blocked_by_the_finalizer_until_they_are_gone()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters");
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod")?["metadata"]?["finalizers"] is not null, "finalizer");
        _api.Create("feitian.io/v1alpha1/volumes", Ns, new JsonObject
        {
            ["apiVersion"] = "feitian.io/v1alpha1", ["kind"] = "Volume",
            ["metadata"] = new JsonObject { ["name"] = "pvc-123" },
            ["spec"] = new JsonObject { ["cluster"] = "prod", ["size"] = "10Gi" },
        });

        _api.Delete(Clusters, Ns, "prod");

        await EventuallyAsync(() => EventReasons().Contains("DeletionBlocked"), "DeletionBlocked event");
        var blocked = _api.Get(Clusters, Ns, "prod")!;
        Assert.NotNull(blocked["metadata"]!["deletionTimestamp"]);
        Assert.Equal("Deleting", blocked["status"]!["phase"]!.GetValue<string>());
        Assert.Contains("pvc-123", blocked["status"]!["conditions"]!.AsArray().Single(c => c!["type"]!.GetValue<string>() == "Progressing")!["message"]!.GetValue<string>());
        Assert.NotNull(_api.Get(StatefulSets, Ns, "prod-master"));
        Assert.NotNull(_api.Get("storage.k8s.io/v1/storageclasses", null, "feitian"));

        _api.Delete("feitian.io/v1alpha1/volumes", Ns, "pvc-123");
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod") is null, "cluster gone");
        Assert.Null(_api.Get("storage.k8s.io/v1/storageclasses", null, "feitian"));
        Assert.Null(_api.Get("storage.k8s.io/v1/csidrivers", null, "feitian.csi.k8s.io"));
        Assert.Null(_api.Get(StatefulSets, Ns, "prod-master"));
    }

    [Fact]
    public async Task Delete_without_volumes_cleans_everything_up()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get("storage.k8s.io/v1/csidrivers", null, "feitian.csi.k8s.io"), "csi driver");
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod")?["metadata"]?["finalizers"] is not null, "finalizer");
        _api.Delete(Clusters, Ns, "prod");
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod") is null, "cluster gone");
        Assert.Null(_api.Get("storage.k8s.io/v1/csidrivers", null, "feitian.csi.k8s.io"));
        Assert.Null(_api.Get("storage.k8s.io/v1/storageclasses", null, "feitian"));
        Assert.Empty(_api.List("rbac.authorization.k8s.io/v1/clusterrolebindings"));
        Assert.Empty(_api.List(RoleBindings, LeaseNs));
        Assert.Empty(_api.List(DaemonSets, Ns));
        Assert.Empty(_api.List("v1/services", Ns));
    }

    [Fact]
    public async Task An_api_error_mid_reconcile_is_retried_until_it_succeeds()
    {
        _api.FailNext("POST", "/statefulsets", HttpStatusCode.InternalServerError, count: 3);
        _api.FailNext("PUT", "/storageclusters/prod/status", HttpStatusCode.Conflict, count: 2);
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters after injected 500s");
        await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod")?["status"]?["phase"] is not null, "status after injected 409s");
        Assert.Equal(5, _api.FaultsServed);
        Assert.Contains("ReconcileFailed", EventReasons());
    }

    [Fact]
    public async Task Watches_that_fail_reconnect_with_backoff()
    {
        // The first list and watch requests of StorageClusters fail: the watcher must retry, not give up.
        _api.FailNext("GET", "/storageclusters", HttpStatusCode.ServiceUnavailable, count: 4);
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters despite failing watches");
        Assert.True(_api.FaultsServed >= 4);
    }

    [Fact]
    public async Task Retries_are_capped_and_giving_up_is_reported()
    {
        _api.FailNext("POST", "/statefulsets", HttpStatusCode.InternalServerError, count: 1000);
        await StartOperatorAsync(maxRetries: 3);
        ApplyCluster();
        await EventuallyAsync(() => EventReasons().Contains("ReconcileGaveUp"), "ReconcileGaveUp event");
        Assert.Null(_api.Get(StatefulSets, Ns, "prod-master"));
    }

    [Fact]
    public async Task A_foreign_storage_class_with_our_name_is_left_alone_and_reported()
    {
        _api.Create("storage.k8s.io/v1/storageclasses", null, new JsonObject
        {
            ["apiVersion"] = "storage.k8s.io/v1", ["kind"] = "StorageClass",
            ["metadata"] = new JsonObject { ["name"] = "feitian" }, ["provisioner"] = "someone.else",
        });
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => EventReasons().Contains("NameTaken"), "NameTaken event");
        Assert.Equal("someone.else", _api.Get("storage.k8s.io/v1/storageclasses", null, "feitian")!["provisioner"]!.GetValue<string>());
        Assert.NotNull(_api.Get(StatefulSets, Ns, "prod-master"));
    }

    [Fact]
    public async Task Watches_survive_410_gone_and_pick_up_later_changes()
    {
        await StartOperatorAsync();
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters");
        _api.Compact(); // ends every watch; resuming from an old resourceVersion now answers 410
        _api.Update(Clusters, Ns, "prod", c => c["spec"]!["masters"] = new JsonObject { ["replicas"] = 5 });
        _api.Compact();
        ApplyCluster("second", c => c["spec"]!["storageClass"] = new JsonObject { ["name"] = "feitian-second" });
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master")?["spec"]?["replicas"]?.GetValue<int>() == 5, "5 masters");
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "second-master"), "second cluster");
        // The fault took effect: at least one watch resumed from a compacted resourceVersion and was answered 410 Gone.
        Assert.True(_api.GoneServed > 0, "no watch was ever answered 410 Gone, so the resume-after-410 path was not exercised");
        Assert.Equal(5, _api.Get(StatefulSets, Ns, "prod-master")!["spec"]!["replicas"]!.GetValue<int>());
    }

    [Fact]
    public async Task Invalid_spec_is_reported_in_status_and_events_without_creating_anything()
    {
        await StartOperatorAsync();
        ApplyCluster(change: c => c["spec"]!["masters"] = new JsonObject { ["replicas"] = 4 });
        var failed = await EventuallyAsync(() => _api.Get(Clusters, Ns, "prod") is { } c && c["status"]?["phase"]?.GetValue<string>() == "Failed" ? c : null, "Failed");
        Assert.Contains("must be 1, 3 or 5", failed["status"]!["conditions"]!.AsArray().Single(c => c!["type"]!.GetValue<string>() == "Ready")!["message"]!.GetValue<string>());
        await EventuallyAsync(() => EventReasons().Contains("InvalidSpec"), "InvalidSpec event");
        Assert.Null(_api.Get(StatefulSets, Ns, "prod-master"));
    }

    [Fact]
    public async Task Two_operator_replicas_elect_one_leader_through_a_lease()
    {
        var first = await StartOperatorAsync("operator-1");
        await EventuallyAsync(() => first.IsLeader, "first leads");
        var second = await StartOperatorAsync("operator-2");
        ApplyCluster();
        await EventuallyAsync(() => _api.Get(StatefulSets, Ns, "prod-master"), "masters");
        var lease = _api.Get("coordination.k8s.io/v1/leases", "feitian-system", "feitian-operator")!;
        Assert.Equal("operator-1", lease["spec"]!["holderIdentity"]!.GetValue<string>());
        Assert.False(second.IsLeader);
        using var http = new HttpClient();
        Assert.Equal("ok\n", await http.GetStringAsync($"http://127.0.0.1:{first.HttpPort}/healthz"));
        Assert.Contains("feitian_operator_reconciles_total", await http.GetStringAsync($"http://127.0.0.1:{first.HttpPort}/metrics"));
    }
}
