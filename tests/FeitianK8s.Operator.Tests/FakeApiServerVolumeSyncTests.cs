using System.Net;
using System.Text.Json.Nodes;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Controller;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Operator.Volumes;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>A REAL master with three chunk servers (on three racks), shared by the volume-sync tests.</summary>
public sealed class RealMasterFixture : IAsyncLifetime
{
    public SwitchableTestOutput Output { get; } = new();
    public TestCluster Cluster { get; private set; } = null!;
    /// <summary>A Pangu client on the CSI controller's node: its master connection is what the CSI driver uses.</summary>
    public PanguClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(Output), chunkServers: 3, racks: 3);
        Client = Cluster.CreateClient("csi-controller");
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>
/// Volume sync end to end: the operator's production code path (OperatorHost with leader election,
/// the Volume watch, the work queue, VolumeSyncReconciler, GrpcMasterVolumes) against a FAKE
/// Kubernetes API server on loopback, and a REAL master process with real chunk servers. Volumes are
/// created on the master the way the CSI driver does it (its own VolumeManager, with its labels).
/// </summary>
public sealed class FakeApiServerVolumeSyncTests : IClassFixture<RealMasterFixture>, IAsyncLifetime
{
    private const string Ns = "storage";
    private const string Volumes = "feitian.io/v1alpha1/volumes";
    private const string Clusters = "feitian.io/v1alpha1/storageclusters";
    private const string Leases = "coordination.k8s.io/v1/leases";
    private const long Mi = 1 << 20;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly RealMasterFixture _fixture;
    private readonly ILoggerFactory _logs;
    private readonly CompletedWorkCounter _work = new();
    private readonly List<OperatorHost> _hosts = [];
    private FakeKubeApiServer _api = null!;

    public FakeApiServerVolumeSyncTests(RealMasterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        fixture.Output.Current = output;
        // As XunitLoggerProvider.CreateFactory, plus the counter of finished volume syncs, which are
        // logged at Debug: only the counter sees that level.
        _logs = LoggerFactory.Create(b => b
            .SetMinimumLevel(LogLevel.Information)
            .AddFilter("Microsoft", LogLevel.Warning)
            .AddFilter("Grpc", LogLevel.Warning)
            .AddFilter("System.Net.Http", LogLevel.Warning)
            .AddProvider(new XunitLoggerProvider(output))
            .AddProvider(_work)
            .AddFilter<CompletedWorkCounter>("FeitianK8s.Operator", LogLevel.Debug));
    }

    private TestCluster Cluster => _fixture.Cluster;
    private VolumeManager Csi => new(_fixture.Client.Master, _logs.CreateLogger<VolumeManager>());
    private MasterVolumeCatalog Catalog => new(_fixture.Client.Master);

    public async Task InitializeAsync()
    {
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
        // The master is shared by the tests of this class: leave it without volumes.
        var master = _fixture.Client.Master;
        var list = await master.CallAsync("list", (c, o) => c.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None);
        foreach (var v in list.Volumes)
        {
            await master.CallAsync("delete", (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = v.Name }, o).ResponseAsync, CancellationToken.None);
        }
        _fixture.Output.Current = null;
        _logs.Dispose();
    }

    private async Task<OperatorHost> StartOperatorAsync(string identity = "operator-1")
    {
        var host = new OperatorHost(
            new OperatorOptions
            {
                HttpPort = 0,
                Listen = "127.0.0.1",
                Identity = identity,
                LeaseNamespace = "feitian-system",
                MasterAddress = Cluster.Launcher.MasterAddress,
                TlsFiles = Cluster.Launcher.TlsFiles(FeitianK8s.Core.Security.ComponentRoles.Operator),
            },
            new KubernetesClientConfiguration { Host = _api.Url }, _logs, null,
            new ReconcilerOptions { NotReadyRetry = TimeSpan.FromSeconds(1), RolloutRetry = TimeSpan.FromSeconds(1) },
            new ControllerOptions { ResyncPeriod = TimeSpan.FromSeconds(5), RetryBaseDelay = TimeSpan.FromMilliseconds(50), RetryMaxDelay = TimeSpan.FromSeconds(1) },
            new VolumeSyncOptions
            {
                ResyncPeriod = TimeSpan.FromMilliseconds(500),
                RetrySoon = TimeSpan.FromMilliseconds(300),
                RetryBaseDelay = TimeSpan.FromMilliseconds(50),
                RetryMaxDelay = TimeSpan.FromSeconds(1),
            });
        _hosts.Add(host);
        await host.StartAsync();
        return host;
    }

    private string VolumeVersion(string name) => Volume(name)!["metadata"]!["resourceVersion"]!.GetValue<string>();

    /// <summary>The volume's resourceVersion once a whole sync (begun after reading it) has left it unchanged.</summary>
    private async Task<string> SettledVolumeVersionAsync(string name)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var version = VolumeVersion(name);
            // Two more completions: the first may be a sync already running when the version was read.
            await _work.WaitForCountAsync("Volume sync", $"{Ns}/prod", _work.Count("Volume sync", $"{Ns}/prod") + 2, Timeout);
            if (VolumeVersion(name) == version)
            {
                return version;
            }
            Assert.True(DateTime.UtcNow < deadline, $"the status of volume {name} never settled within {Timeout}");
        }
    }

    private static JsonObject ToJson(object o) => (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(o))!;

    private JsonObject ApplyStorageCluster()
    {
        var obj = ToJson(TestClusters.Minimal("prod", Ns));
        obj["metadata"] = new JsonObject { ["name"] = "prod" };
        obj.Remove("status");
        return _api.Create(Clusters, Ns, obj);
    }

    private void ApplyVolume(string name, string size, int replicas = 3) => _api.Create(Volumes, Ns, new JsonObject
    {
        ["apiVersion"] = "feitian.io/v1alpha1",
        ["kind"] = "Volume",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject { ["cluster"] = "prod", ["size"] = size, ["replicas"] = replicas, ["rackSpread"] = true, ["accessMode"] = "ReadWriteOnce" },
    });

    private JsonObject? Volume(string name) => _api.Get(Volumes, Ns, name);

    private static string? State(JsonObject? v) => v?["status"]?["state"]?.GetValue<string>();

    private static JsonObject? Condition(JsonObject? v, string type) =>
        v?["status"]?["conditions"]?.AsArray().FirstOrDefault(c => c!["type"]!.GetValue<string>() == type) as JsonObject;

    private bool HasEvent(string name, string type, string reason) => _api.List("v1/events", Ns).Any(e =>
        e["involvedObject"]?["name"]?.GetValue<string>() == name && e["type"]?.GetValue<string>() == type && e["reason"]?.GetValue<string>() == reason);

    private async Task<VolumeInfo?> StatOnMasterAsync(string name)
    {
        try
        {
            return await _fixture.Client.Master.CallAsync("stat", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = name }, o).ResponseAsync, CancellationToken.None);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
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

    private static async Task EventuallyAsync(Func<Task<bool>> probe, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await probe())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task A_csi_volume_on_the_real_master_appears_on_the_fake_api_server_as_a_mirror_that_follows_attach_expand_and_delete()
    {
        var cluster = ApplyStorageCluster();
        await StartOperatorAsync();

        await Csi.CreateAsync("pvc-mirror", 64 * Mi, 0, new VolumeParameters(2, false, "xfs"), CancellationToken.None);

        var mirror = await EventuallyAsync(() => State(Volume("pvc-mirror")) == "Available" ? Volume("pvc-mirror") : null, "mirror Available");
        var meta = mirror["metadata"]!;
        Assert.Equal("csi", meta["labels"]![VolumeNames.OriginLabel]!.GetValue<string>());
        Assert.Equal(cluster["metadata"]!["uid"]!.GetValue<string>(), meta["ownerReferences"]![0]!["uid"]!.GetValue<string>());
        Assert.Null(meta["finalizers"]);
        Assert.Equal("prod", mirror["spec"]!["cluster"]!.GetValue<string>());
        Assert.Equal("64Mi", mirror["spec"]!["size"]!.GetValue<string>());
        Assert.Equal(2, mirror["spec"]!["replicas"]!.GetValue<int>());
        Assert.False(mirror["spec"]!["rackSpread"]!.GetValue<bool>());
        Assert.Equal("2/2", mirror["status"]!["replicaHealth"]!.GetValue<string>());
        Assert.Equal(64 * Mi, mirror["status"]!["sizeBytes"]!.GetValue<long>());
        var ready = Condition(mirror, Conditions.Ready)!;
        Assert.Equal("True", ready["status"]!.GetValue<string>());
        Assert.Equal(1, ready["observedGeneration"]!.GetValue<long>());

        // ControllerPublish (to a node whose node plugin registered): the node takes the volume's lease.
        await _fixture.Client.Master.CallAsync("register node",
            (c, o) => c.RegisterNodeAsync(new RegisterNodeRequest { Id = "node-b1", Rack = "rack-1" }, o).ResponseAsync, CancellationToken.None);
        await Csi.PublishAsync("pvc-mirror", "node-b1", writable: true, CancellationToken.None);
        var attached = await EventuallyAsync(() => State(Volume("pvc-mirror")) == "Attached" ? Volume("pvc-mirror") : null, "mirror Attached");
        Assert.Equal("node-b1", attached["status"]!["attachedNode"]!.GetValue<string>());

        await Csi.ExpandAsync("pvc-mirror", 128 * Mi, 0, CancellationToken.None);
        await EventuallyAsync(() => Volume("pvc-mirror")?["spec"]?["size"]?.GetValue<string>() == "128Mi", "mirror follows the expansion");

        await Csi.UnpublishAsync("pvc-mirror", "node-b1", CancellationToken.None);
        await EventuallyAsync(() => State(Volume("pvc-mirror")) == "Available" && Volume("pvc-mirror")!["status"]!["attachedNode"] is null, "mirror detached");
        await Csi.DeleteAsync("pvc-mirror", CancellationToken.None);
        await EventuallyAsync(() => Volume("pvc-mirror") is null, "mirror gone with the master volume");
    }

    /// <summary>
    /// spec.sourceSnapshot: the master volume is made as a copy-on-write clone of the cluster snapshot,
    /// with the snapshot's bytes; a snapshot that does not exist makes the Volume Failed with the
    /// master's reason and creates nothing.
    /// </summary>
    [Fact]
    public async Task A_user_volume_with_a_source_snapshot_on_the_fake_api_server_is_created_as_a_clone_with_the_snapshots_bytes()
    {
        var fs = _fixture.Client;
        await fs.Master.CallAsync("create", (c, o) => c.CreateVolumeAsync(new CreateVolumeRequest { Name = "golden", SizeBytes = 8 * Mi, Replicas = 3 }, o).ResponseAsync,
            CancellationToken.None);
        var head = new byte[Mi];
        new Random(61).NextBytes(head);
        var engine = await RafVolume.OpenAsync(fs, Catalog, "golden", new RafOptions { Holder = "test-writer", GcInterval = null, SnapshotRequestInterval = null },
            _logs.CreateLogger("golden"), CancellationToken.None);
        await engine.WriteAsync(3 * Mi, head, fua: true);
        await engine.DisposeAsync();
        await Catalog.AcquireLeaseAsync("golden", "");
        var snapshots = new VolumeSnapshots(fs, fs.Master, _logs.CreateLogger<VolumeSnapshots>());
        await snapshots.CreateAsync("golden", "golden-snap.1", CancellationToken.None);
        // Written after the snapshot: the clone must not see it.
        engine = await RafVolume.OpenAsync(fs, Catalog, "golden", new RafOptions { Holder = "test-writer", GcInterval = null, SnapshotRequestInterval = null },
            _logs.CreateLogger("golden"), CancellationToken.None);
        await engine.WriteAsync(3 * Mi, new byte[Mi], fua: true);
        await engine.DisposeAsync();
        await Catalog.AcquireLeaseAsync("golden", "");

        ApplyStorageCluster();
        await StartOperatorAsync();
        _api.Create(Volumes, Ns, new JsonObject
        {
            ["apiVersion"] = "feitian.io/v1alpha1",
            ["kind"] = "Volume",
            ["metadata"] = new JsonObject { ["name"] = "restored" },
            ["spec"] = new JsonObject { ["cluster"] = "prod", ["size"] = "16Mi", ["replicas"] = 2, ["rackSpread"] = true, ["sourceSnapshot"] = "golden-snap.1" },
        });
        var available = await EventuallyAsync(() => State(Volume("restored")) == "Available" ? Volume("restored") : null, "restored volume Available");
        Assert.Contains(VolumeNames.Finalizer, available["metadata"]!["finalizers"]!.AsArray().Select(f => f!.GetValue<string>()));
        var info = (await StatOnMasterAsync("restored"))!;
        Assert.Equal(((ulong)(16 * Mi), 2u), (info.SizeBytes, info.Replicas));
        Assert.Equal("snapshot/golden-snap.1", info.Labels[VolumeSnapshots.SourceLabel]);
        Assert.Equal(available["metadata"]!["uid"]!.GetValue<string>(), info.Labels[VolumeNames.VolumeUidLabel]);
        await EventuallyAsync(() => HasEvent("restored", "Normal", "Created"), "Created event");

        var clone = await RafVolume.OpenReadOnlyAsync(fs, Catalog, "restored", new RafOptions { GcInterval = null, SnapshotRequestInterval = null },
            _logs.CreateLogger("restored"), CancellationToken.None);
        var read = new byte[Mi];
        await clone.ReadAsync(3 * Mi, read);
        Assert.Equal(head, read);
        await clone.ReadAsync(10 * Mi, read);
        Assert.Equal(new byte[Mi], read);
        await clone.DisposeAsync();

        // A snapshot that does not exist: Failed with the reason, nothing on the master.
        _api.Create(Volumes, Ns, new JsonObject
        {
            ["apiVersion"] = "feitian.io/v1alpha1",
            ["kind"] = "Volume",
            ["metadata"] = new JsonObject { ["name"] = "from-nothing" },
            ["spec"] = new JsonObject { ["cluster"] = "prod", ["size"] = "16Mi", ["replicas"] = 3, ["rackSpread"] = true, ["sourceSnapshot"] = "no-such-snapshot" },
        });
        var failed = await EventuallyAsync(() => State(Volume("from-nothing")) == "Failed" ? Volume("from-nothing") : null, "Failed for a missing snapshot");
        Assert.Contains("no-such-snapshot", Condition(failed, Conditions.Synced)!["message"]!.GetValue<string>());
        await EventuallyAsync(() => HasEvent("from-nothing", "Warning", "MasterError"), "MasterError event");
        Assert.Null(await StatOnMasterAsync("from-nothing"));

        _api.Delete(Volumes, Ns, "restored");
        await EventuallyAsync(async () => await StatOnMasterAsync("restored") is null, "clone deleted on the master");
        await snapshots.RemoveAsync("golden-snap.1", CancellationToken.None);
    }

    [Fact]
    public async Task A_user_volume_on_the_fake_api_server_creates_a_real_master_volume_that_grows_but_never_shrinks()
    {
        ApplyStorageCluster();
        await StartOperatorAsync();
        ApplyVolume("scratch", "100Mi", replicas: 3);

        var available = await EventuallyAsync(() => State(Volume("scratch")) == "Available" ? Volume("scratch") : null, "user volume Available");
        Assert.Contains(VolumeNames.Finalizer, available["metadata"]!["finalizers"]!.AsArray().Select(f => f!.GetValue<string>()));
        Assert.Equal("3/3", available["status"]!["replicaHealth"]!.GetValue<string>());
        var info = (await StatOnMasterAsync("scratch"))!;
        Assert.Equal((ulong)(100 * Mi), info.SizeBytes);
        Assert.Equal(3u, info.Replicas);
        Assert.Equal(available["metadata"]!["uid"]!.GetValue<string>(), info.Labels[VolumeNames.VolumeUidLabel]);
        await EventuallyAsync(() => HasEvent("scratch", "Normal", "Created"), "Created event");
        // Many resyncs later nothing was rewritten: status is written only when it changes. Counted
        // syncs, not a quiet window: settle first, then four more full syncs must leave it alone.
        var version = await SettledVolumeVersionAsync("scratch");
        var syncs = _work.Count("Volume sync", $"{Ns}/prod");
        await _work.WaitForCountAsync("Volume sync", $"{Ns}/prod", syncs + 4, Timeout);
        Assert.Equal(version, VolumeVersion("scratch"));

        _api.Update(Volumes, Ns, "scratch", v => v["spec"]!["size"] = "200Mi");
        await EventuallyAsync(async () => (await StatOnMasterAsync("scratch"))?.SizeBytes == (ulong)(200 * Mi), "master volume grown");
        await EventuallyAsync(() => Volume("scratch")?["status"]?["sizeBytes"]?.GetValue<long>() == 200 * Mi, "status shows the new size");

        _api.Update(Volumes, Ns, "scratch", v => v["spec"]!["size"] = "50Mi");
        var refused = await EventuallyAsync(() => Condition(Volume("scratch"), Conditions.Synced)?["reason"]?.GetValue<string>() == "ShrinkRefused" ? Volume("scratch") : null,
            "ShrinkRefused condition");
        Assert.Equal(refused["metadata"]!["generation"]!.GetValue<long>(), Condition(refused, Conditions.Synced)!["observedGeneration"]!.GetValue<long>());
        await EventuallyAsync(() => HasEvent("scratch", "Warning", "ShrinkRefused"), "ShrinkRefused event");
        Assert.Equal((ulong)(200 * Mi), (await StatOnMasterAsync("scratch"))!.SizeBytes);
        Assert.Equal("Available", State(refused));
    }

    [Fact]
    public async Task Deleting_an_attached_user_volume_on_the_fake_api_server_waits_for_the_detach_then_deletes_the_real_master_volume()
    {
        ApplyStorageCluster();
        await StartOperatorAsync();
        ApplyVolume("held", "16Mi");
        await EventuallyAsync(() => State(Volume("held")) == "Available", "user volume Available");

        await Catalog.AcquireLeaseAsync("held", "node-c1");
        var attached = await EventuallyAsync(() => State(Volume("held")) == "Attached" ? Volume("held") : null, "Attached");
        Assert.Equal("node-c1", attached["status"]!["attachedNode"]!.GetValue<string>());

        _api.Delete(Volumes, Ns, "held");
        await EventuallyAsync(() => HasEvent("held", "Warning", "DeletionBlocked"), "DeletionBlocked event");
        var blocked = await EventuallyAsync(() => State(Volume("held")) == "Deleting" ? Volume("held") : null, "state Deleting");
        Assert.NotNull(blocked["metadata"]!["deletionTimestamp"]);
        Assert.Equal("DeletionBlocked", Condition(blocked, Conditions.Synced)!["reason"]!.GetValue<string>());
        Assert.Equal("node-c1", blocked["status"]!["attachedNode"]!.GetValue<string>());
        Assert.NotNull(await StatOnMasterAsync("held"));

        await Catalog.AcquireLeaseAsync("held", ""); // the node lets go (ControllerUnpublish)
        await EventuallyAsync(() => Volume("held") is null, "Volume gone after the detach");
        Assert.Null(await StatOnMasterAsync("held"));
        await EventuallyAsync(() => HasEvent("held", "Normal", "VolumeDeleted"), "VolumeDeleted event");
    }

    [Fact]
    public async Task Deleting_a_mirror_on_the_fake_api_server_recreates_it_and_the_real_volume_keeps_its_data()
    {
        ApplyStorageCluster();
        await StartOperatorAsync();
        await Csi.CreateAsync("pvc-keep", 16 * Mi, 0, new VolumeParameters(3, true, "ext4"), CancellationToken.None);
        var data = TestData.Random((int)Mi, seed: 7);
        await using (var writer = await RafVolume.OpenAsync(_fixture.Client, Catalog, "pvc-keep", new RafOptions { Holder = "node-a1", GcInterval = null },
            _logs.CreateLogger<RafVolume>(), CancellationToken.None))
        {
            await writer.WriteAsync(Mi, data, fua: true);
        }
        var first = await EventuallyAsync(() => State(Volume("pvc-keep")) == "Attached" ? Volume("pvc-keep") : null, "mirror Attached to the writer's node");
        Assert.Equal("node-a1", first["status"]!["attachedNode"]!.GetValue<string>());
        var uid = first["metadata"]!["uid"]!.GetValue<string>();

        _api.Delete(Volumes, Ns, "pvc-keep");

        var again = await EventuallyAsync(() => Volume("pvc-keep") is { } v && v["metadata"]!["uid"]!.GetValue<string>() != uid && v["status"] is not null ? v : null,
            "mirror recreated");
        Assert.Equal("csi", again["metadata"]!["labels"]![VolumeNames.OriginLabel]!.GetValue<string>());
        Assert.NotNull(await StatOnMasterAsync("pvc-keep"));
        await using var reader = await RafVolume.OpenAsync(_fixture.Client, Catalog, "pvc-keep", new RafOptions { Holder = "node-a2", GcInterval = null },
            _logs.CreateLogger<RafVolume>(), CancellationToken.None);
        var seen = new byte[Mi];
        await reader.ReadAsync(Mi, seen);
        Assert.True(data.AsSpan().SequenceEqual(seen), "the volume's data changed after its mirror was deleted");
    }

    [Fact]
    public async Task A_user_volume_named_like_a_real_csi_volume_is_refused_on_the_fake_api_server_and_the_volume_is_untouched()
    {
        ApplyStorageCluster();
        await Csi.CreateAsync("pvc-clash", 32 * Mi, 0, new VolumeParameters(3, true, "ext4"), CancellationToken.None);
        ApplyVolume("pvc-clash", "32Mi"); // before the operator runs, so no mirror holds the name yet
        await StartOperatorAsync();

        var refused = await EventuallyAsync(() => State(Volume("pvc-clash")) == "Failed" ? Volume("pvc-clash") : null, "Failed");
        Assert.Equal("NameConflict", Condition(refused, Conditions.Synced)!["reason"]!.GetValue<string>());
        Assert.Null(refused["metadata"]!["finalizers"]);
        await EventuallyAsync(() => HasEvent("pvc-clash", "Warning", "NameConflict"), "NameConflict event");

        _api.Delete(Volumes, Ns, "pvc-clash");
        await EventuallyAsync(() => Volume("pvc-clash")?["metadata"]?["labels"]?[VolumeNames.OriginLabel]?.GetValue<string>() == "csi", "the CSI volume mirrored once the name is free");
        var info = (await StatOnMasterAsync("pvc-clash"))!;
        Assert.Equal((ulong)(32 * Mi), info.SizeBytes);
    }

    [Fact]
    public async Task Api_errors_mid_sync_on_the_fake_api_server_are_retried_until_the_mirror_and_its_status_are_written()
    {
        ApplyStorageCluster();
        _api.FailNext("POST", $"/namespaces/{Ns}/volumes", HttpStatusCode.InternalServerError, count: 2);
        _api.FailNext("PUT", "/volumes/pvc-retry/status", HttpStatusCode.Conflict, count: 1);
        _api.FailNext("PUT", "/volumes/pvc-retry/status", HttpStatusCode.ServiceUnavailable, count: 1);
        await Csi.CreateAsync("pvc-retry", 8 * Mi, 0, new VolumeParameters(3, true, "ext4"), CancellationToken.None);
        await StartOperatorAsync();

        var mirror = await EventuallyAsync(() => State(Volume("pvc-retry")) == "Available" ? Volume("pvc-retry") : null, "mirror with status after injected errors");
        Assert.Equal("8Mi", mirror["spec"]!["size"]!.GetValue<string>());
        Assert.Equal(4, _api.FaultsServed);
        await EventuallyAsync(() => HasEvent("prod", "Warning", "VolumeSyncFailed"), "VolumeSyncFailed event on the StorageCluster");
    }

    [Fact]
    public async Task A_volume_naming_a_missing_cluster_on_the_fake_api_server_says_so_and_creates_nothing()
    {
        ApplyStorageCluster();
        await StartOperatorAsync();
        _api.Create(Volumes, Ns, new JsonObject
        {
            ["apiVersion"] = "feitian.io/v1alpha1",
            ["kind"] = "Volume",
            ["metadata"] = new JsonObject { ["name"] = "typo" },
            ["spec"] = new JsonObject { ["cluster"] = "prdo", ["size"] = "1Gi" },
        });
        var v = await EventuallyAsync(() => Condition(Volume("typo"), Conditions.Ready)?["reason"]?.GetValue<string>() == "ClusterNotFound" ? Volume("typo") : null,
            "ClusterNotFound");
        Assert.Equal("Creating", State(v));
        Assert.Null(v["metadata"]!["finalizers"]);
        Assert.Null(await StatOnMasterAsync("typo"));
    }

    [Fact]
    public async Task Only_the_operator_holding_the_lease_on_the_fake_api_server_syncs_volumes()
    {
        var now = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ");
        _api.Create(Leases, "feitian-system", new JsonObject
        {
            ["apiVersion"] = "coordination.k8s.io/v1",
            ["kind"] = "Lease",
            ["metadata"] = new JsonObject { ["name"] = "feitian-operator" },
            ["spec"] = new JsonObject
            {
                ["holderIdentity"] = "another-operator", ["leaseDurationSeconds"] = 3600, ["acquireTime"] = now, ["renewTime"] = now, ["leaseTransitions"] = 0,
            },
        });
        ApplyStorageCluster();
        await Csi.CreateAsync("pvc-lease", 8 * Mi, 0, new VolumeParameters(3, true, "ext4"), CancellationToken.None);
        var host = await StartOperatorAsync();

        // While another operator holds the lease, nothing is mirrored (several resync periods).
        for (var i = 0; i < 30; i++)
        {
            Assert.False(host.IsLeader);
            Assert.Null(Volume("pvc-lease"));
            await Task.Delay(100);
        }
        _api.Delete(Leases, "feitian-system", "feitian-operator"); // the other operator is gone
        await EventuallyAsync(() => State(Volume("pvc-lease")) == "Available", "mirror once this operator leads");
        Assert.True(host.IsLeader);
    }
}

/// <summary>
/// Replica health end to end: the operator against a FAKE Kubernetes API server, and a REAL master
/// with three chunk servers of which one is killed and restarted. The health is what the master
/// reports about the volume's chunks, not an assumption.
/// </summary>
public sealed class FakeApiServerVolumeHealthTests(ITestOutputHelper output)
{
    private const long Mi = 1 << 20;

    [Fact]
    public async Task A_killed_chunk_server_makes_the_volume_on_the_fake_api_server_degraded_until_it_is_back()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output);
        await using var cluster = await TestCluster.StartAsync(logs, chunkServers: 3, racks: 3, extraMasterArgs: ["--heartbeat-timeout", "4s"]);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        var manifest = (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(TestClusters.Minimal("prod", "storage")))!;
        manifest["metadata"] = new JsonObject { ["name"] = "prod" };
        manifest.Remove("status");
        api.Create("feitian.io/v1alpha1/storageclusters", "storage", manifest);
        var client = cluster.CreateClient("csi-controller");
        await new VolumeManager(client.Master, logs.CreateLogger<VolumeManager>())
            .CreateAsync("pvc-health", 16 * Mi, 0, new VolumeParameters(3, true, "ext4"), CancellationToken.None);
        await using (var writer = await RafVolume.OpenAsync(client, new MasterVolumeCatalog(client.Master), "pvc-health",
            new RafOptions { Holder = "node-a1", GcInterval = null }, logs.CreateLogger<RafVolume>(), CancellationToken.None))
        {
            await writer.WriteAsync(0, TestData.Random((int)Mi, seed: 3), fua: true);
        }
        await using var host = new OperatorHost(
            new OperatorOptions { HttpPort = 0, Listen = "127.0.0.1", LeaderElect = false, Identity = "op", MasterAddress = cluster.Launcher.MasterAddress, TlsFiles = cluster.Launcher.TlsFiles(FeitianK8s.Core.Security.ComponentRoles.Operator) },
            new KubernetesClientConfiguration { Host = api.Url }, logs,
            volumeOptions: new VolumeSyncOptions { ResyncPeriod = TimeSpan.FromMilliseconds(500), RetryBaseDelay = TimeSpan.FromMilliseconds(50) });
        await host.StartAsync();

        string? Health() => api.Get("feitian.io/v1alpha1/volumes", "storage", "pvc-health")?["status"]?["replicaHealth"]?.GetValue<string>();
        string? State() => api.Get("feitian.io/v1alpha1/volumes", "storage", "pvc-health")?["status"]?["state"]?.GetValue<string>();
        async Task WaitAsync(Func<bool> probe, string what)
        {
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (!probe())
            {
                Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}; health {Health()}, state {State()}");
                await Task.Delay(100);
            }
        }

        await WaitAsync(() => Health() == "3/3" && State() == "Attached", "3/3 Attached");
        cluster.Launcher.KillChunkServer(2);
        await WaitAsync(() => Health() == "2/3" && State() == "Degraded", "2/3 Degraded");
        var degraded = api.Get("feitian.io/v1alpha1/volumes", "storage", "pvc-health")!;
        Assert.Equal("node-a1", degraded["status"]!["attachedNode"]!.GetValue<string>());
        Assert.Contains(degraded["status"]!["conditions"]!.AsArray(), c => c!["type"]!.GetValue<string>() == "Degraded" && c["status"]!.GetValue<string>() == "True");

        await cluster.Launcher.RestartChunkServerAsync(2);
        await WaitAsync(() => Health() == "3/3" && State() == "Attached", "3/3 again after the restart");
    }
}
