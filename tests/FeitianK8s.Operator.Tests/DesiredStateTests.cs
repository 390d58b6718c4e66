using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

public sealed class DesiredStateTests
{
    private static IReadOnlyList<DesiredObject> Build(StorageCluster? c = null, IReadOnlyList<V1Node>? nodes = null, bool snapshotCrd = false) =>
        DesiredState.Build(c ?? TestClusters.Minimal(), new ClusterEnvironment(nodes ?? TestClusters.ThreeRacks(), snapshotCrd));

    private static T Single<T>(IReadOnlyList<DesiredObject> objects, string name) => objects.Select(o => o.Object).OfType<T>()
        .Single(o => ((k8s.IKubernetesObject<V1ObjectMeta>)o!).Metadata.Name == name);

    [Fact]
    public void Defaults_of_a_minimal_cluster_match_the_crd_defaults()
    {
        var spec = TestClusters.Minimal().Spec;
        Assert.Equal(3, spec.Masters.Replicas);
        Assert.Equal(3, spec.Replication.Factor);
        Assert.Equal("topology.kubernetes.io/zone", spec.ChunkServers.RackLabel);
        Assert.Equal(["/var/lib/feitian/data"], spec.ChunkServers.DataDirs);
        Assert.Equal("feitian", spec.StorageClass.Name);
    }

    [Fact]
    public void Rack_grouping_takes_selected_nodes_by_rack_and_reports_unlabelled_ones()
    {
        var nodes = TestClusters.ThreeRacks();
        nodes.Add(TestClusters.Node("node-x", rack: null));
        var groups = RackGrouping.Group(nodes, new Dictionary<string, string> { ["feitian.io/storage"] = "true" }, "topology.kubernetes.io/zone");
        Assert.Equal(["rack-a", "rack-b", "rack-c"], groups.Racks);
        Assert.Equal(["node-a1", "node-a2"], groups.NodesByRack["rack-a"]);
        Assert.Equal(["node-x"], groups.NodesWithoutRack);
    }

    [Fact]
    public void One_chunk_server_daemonset_per_rack_with_rack_argument_and_node_affinity()
    {
        var objects = Build();
        var sets = DesiredState.ChunkServerDaemonSets(objects).ToList();
        Assert.Equal(["prod-chunkserver-rack-a", "prod-chunkserver-rack-b", "prod-chunkserver-rack-c"], sets.Select(s => s.Metadata.Name));
        var b = sets[1];
        var args = b.Spec.Template.Spec.Containers[0].Args;
        Assert.Equal("rack-b", args[args.IndexOf("--rack") + 1]);
        // Mutual TLS by default: the masters are dialled over https.
        Assert.Equal("https://prod-master-0.prod-master.storage.svc:9000,https://prod-master-1.prod-master.storage.svc:9000,https://prod-master-2.prod-master.storage.svc:9000",
            args[args.IndexOf("--master") + 1]);
        Assert.Equal("/data/0", args[args.IndexOf("--data") + 1]);
        Assert.Equal("https://$(POD_IP):9100", args[args.IndexOf("--advertise") + 1]);
        var terms = b.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms.Single().MatchExpressions;
        Assert.Contains(terms, t => t.Key == "topology.kubernetes.io/zone" && t.OperatorProperty == "In" && t.Values.SequenceEqual(["rack-b"]));
        Assert.Contains(terms, t => t.Key == "feitian.io/storage" && t.Values.SequenceEqual(["true"]));
        Assert.Equal("OnDelete", b.Spec.UpdateStrategy.Type);
        Assert.Equal("/var/lib/feitian/data", b.Spec.Template.Spec.Volumes.Single(v => v.HostPath is not null).HostPath.Path);
        Assert.Equal("prod-tls-chunkserver", b.Spec.Template.Spec.Volumes.Single(v => v.Secret is not null).Secret.SecretName);
        Assert.NotNull(b.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation]);
    }

    [Fact]
    public void Several_data_dirs_become_several_host_path_volumes()
    {
        var c = TestClusters.Minimal();
        c.Spec.ChunkServers.DataDirs = ["/mnt/disk1", "/mnt/disk2"];
        var ds = DesiredState.ChunkServerDaemonSets(Build(c)).First();
        var args = ds.Spec.Template.Spec.Containers[0].Args;
        Assert.Equal("/data/0,/data/1", args[args.IndexOf("--data") + 1]);
        Assert.Equal(["/mnt/disk1", "/mnt/disk2"], ds.Spec.Template.Spec.Volumes.Where(v => v.HostPath is not null).Select(v => v.HostPath.Path));
    }

    [Fact]
    public void Masters_have_required_host_anti_affinity_headless_service_and_majority_pdb()
    {
        var c = TestClusters.Minimal();
        c.Spec.Masters.Replicas = 5;
        var objects = Build(c);
        var sts = Single<V1StatefulSet>(objects, "prod-master");
        Assert.Equal(5, sts.Spec.Replicas);
        Assert.Equal("prod-master", sts.Spec.ServiceName);
        var anti = sts.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution.Single();
        Assert.Equal("kubernetes.io/hostname", anti.TopologyKey);
        Assert.Equal(sts.Spec.Selector.MatchLabels, anti.LabelSelector.MatchLabels);
        var svc = objects.Select(o => o.Object).OfType<V1Service>().Single(s => s.Metadata.Name == "prod-master");
        Assert.Equal("None", svc.Spec.ClusterIP);
        var pdb = Single<V1PodDisruptionBudget>(objects, "prod-master");
        Assert.Equal("3", pdb.Spec.MinAvailable.Value);

        // The Raft group: every member by its stable name, this pod's identity from the downward API.
        var args = sts.Spec.Template.Spec.Containers[0].Args;
        Assert.Equal(string.Join(",", Enumerable.Range(0, 5).Select(i => $"prod-master-{i}.prod-master.storage.svc:9002")), args[args.IndexOf("--peers") + 1]);
        Assert.Equal("$(POD_NAME).prod-master.storage.svc:9002", args[args.IndexOf("--raft-endpoint") + 1]);
        Assert.Equal("https://$(POD_NAME).prod-master.storage.svc:9000", args[args.IndexOf("--advertise") + 1]);
        Assert.Equal("metadata.name", sts.Spec.Template.Spec.Containers[0].Env.Single(e => e.Name == "POD_NAME").ValueFrom.FieldRef.FieldPath);
        Assert.True(svc.Spec.PublishNotReadyAddresses);
        Assert.Contains(svc.Spec.Ports, p => p.Name == "raft" && p.Port == 9002);
    }

    [Fact]
    public void Node_plugins_serve_per_volume_metrics_on_a_port_their_metrics_service_names_http_metrics()
    {
        var objects = Build();
        var driver = Single<V1DaemonSet>(objects, "prod-csi-node").Spec.Template.Spec.Containers.Single(c => c.Name == "csi-driver");
        Assert.Equal("9811", driver.Args[driver.Args.IndexOf("--metrics-port") + 1]);
        Assert.Contains(driver.Ports, p => p.Name == "http-metrics" && p.ContainerPort == 9811);
        var svc = objects.Select(o => o.Object).OfType<V1Service>().Single(s => s.Metadata.Name == "prod-csi-node-metrics");
        var port = Assert.Single(svc.Spec.Ports);
        // The chart's ServiceMonitor scrapes every FeitianK8s Service's port named http-metrics.
        Assert.Equal(("http-metrics", 9811), (port.Name, port.Port));
        Assert.Equal("feitian", svc.Metadata.Labels["app.kubernetes.io/name"]);
        var pods = Single<V1DaemonSet>(objects, "prod-csi-node").Spec.Template.Metadata.Labels;
        Assert.All(svc.Spec.Selector, kv => Assert.Equal(kv.Value, pods[kv.Key]));
    }

    [Fact]
    public void Masters_advertise_their_console_by_pod_name_and_the_headless_service_exposes_it_as_port_http()
    {
        var c = TestClusters.Minimal();
        c.Spec.Masters.HttpPort = 9301;
        var objects = Build(c);
        var args = Single<V1StatefulSet>(objects, "prod-master").Spec.Template.Spec.Containers[0].Args;
        // A follower redirects the console to the leader's --advertise-http: a name every pod (and an Ingress) resolves.
        Assert.Equal("http://$(POD_NAME).prod-master.storage.svc:9301", args[args.IndexOf("--advertise-http") + 1]);
        Assert.Equal("9301", args[args.IndexOf("--http-port") + 1]);
        var svc = objects.Select(o => o.Object).OfType<V1Service>().Single(s => s.Metadata.Name == "prod-master");
        var http = Assert.Single(svc.Spec.Ports, p => p.Name == "http");
        Assert.Equal(9301, http.Port);
        Assert.Equal("9301", http.TargetPort.Value);
        // Not named http-metrics: the ServiceMonitor scrapes the masters once, through prod-master-metrics.
        Assert.DoesNotContain(svc.Spec.Ports, p => p.Name == "http-metrics");
    }

    [Fact]
    public void Csi_controller_has_a_sidecar_per_advertised_capability_on_one_socket()
    {
        var deployment = Single<V1Deployment>(Build(), "prod-csi-controller");
        var containers = deployment.Spec.Template.Spec.Containers;
        // csi-snapshotter: the driver advertises CREATE_DELETE_SNAPSHOT (without it the sidecar would exit at start).
        Assert.Equal(["csi-driver", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "liveness-probe"], containers.Select(c => c.Name));
        Assert.All(containers.Skip(1), c => Assert.Contains("--csi-address=/csi/csi.sock", c.Args));
        var driverArgs = containers[0].Args;
        Assert.Equal("controller", driverArgs[driverArgs.IndexOf("--mode") + 1]);
        Assert.Equal("unix:///csi/csi.sock", driverArgs[driverArgs.IndexOf("--endpoint") + 1]);
        Assert.Equal("prod-master-0.prod-master.storage.svc:9000,prod-master-1.prod-master.storage.svc:9000,prod-master-2.prod-master.storage.svc:9000",
            driverArgs[driverArgs.IndexOf("--masters") + 1]);
        Assert.Equal("prod-csi", deployment.Spec.Template.Spec.ServiceAccountName);
        var binding = Single<V1ClusterRoleBinding>(Build(), "feitian-csi-controller-storage-prod");
        Assert.Equal(("feitian-csi-controller", "prod-csi", "storage"), (binding.RoleRef.Name, binding.Subjects.Single().Name, binding.Subjects.Single().NamespaceProperty));
        var provisioner = containers.Single(c => c.Name == "csi-provisioner").Args;
        Assert.DoesNotContain(provisioner, a => a.StartsWith("--feature-gates", StringComparison.Ordinal));
        Assert.DoesNotContain("--extra-create-metadata", provisioner);
        Assert.All(containers.Where(c => c.Name is "csi-provisioner" or "csi-attacher" or "csi-resizer"),
            c => Assert.Contains("--leader-election-namespace=storage", c.Args));
    }

    [Fact]
    public void Sidecar_leases_are_granted_by_a_namespaced_role_binding_in_the_lease_namespace()
    {
        var objects = DesiredState.Build(TestClusters.Minimal(), new ClusterEnvironment(TestClusters.ThreeRacks(), false, "rel-csi", "feitian-system"));
        var deployment = Single<V1Deployment>(objects, "prod-csi-controller");
        Assert.All(deployment.Spec.Template.Spec.Containers.Where(c => c.Args.Contains("--leader-election")),
            c => Assert.Contains("--leader-election-namespace=feitian-system", c.Args));
        var binding = Assert.Single(objects.Select(o => o.Object).OfType<V1RoleBinding>());
        Assert.Equal(("feitian-system", "Role", "rel-csi-leader-election"), (binding.Metadata.NamespaceProperty, binding.RoleRef.Kind, binding.RoleRef.Name));
        Assert.Equal(("prod-csi", "storage"), (binding.Subjects.Single().Name, binding.Subjects.Single().NamespaceProperty));
        Assert.Equal("storage.prod", binding.Metadata.Labels[Names.OwnerLabel]);
        // The ClusterRoleBindings name only the chart's CSI ClusterRoles (which grant no leases, see the Helm tests).
        Assert.Equal(["rel-csi-controller", "rel-csi-node"], objects.Select(o => o.Object).OfType<V1ClusterRoleBinding>().Select(b => b.RoleRef.Name).Order());
    }

    [Fact]
    public void Liveness_goes_through_http_endpoints_with_timeouts_of_at_least_three_seconds()
    {
        var objects = Build();
        var controller = Single<V1Deployment>(objects, "prod-csi-controller").Spec.Template.Spec.Containers;
        var node = Single<V1DaemonSet>(objects, "prod-csi-node").Spec.Template.Spec.Containers;
        foreach (var containers in new[] { controller, node })
        {
            var probe = containers.Single(c => c.Name == "liveness-probe");
            Assert.DoesNotContain(probe.Args, a => a.StartsWith("--health-port", StringComparison.Ordinal));
            var endpoint = probe.Args.Single(a => a.StartsWith("--http-endpoint=:", StringComparison.Ordinal));
            var port = int.Parse(endpoint["--http-endpoint=:".Length..], System.Globalization.CultureInfo.InvariantCulture);
            var timeout = probe.Args.Single(a => a.StartsWith("--probe-timeout=", StringComparison.Ordinal));
            var seconds = int.Parse(timeout["--probe-timeout=".Length..].TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(seconds >= 3, timeout);
            var kubelet = containers.Single(c => c.Name == "csi-driver").LivenessProbe;
            Assert.Equal(port.ToString(System.Globalization.CultureInfo.InvariantCulture), kubelet.HttpGet.Port.Value);
            Assert.True(kubelet.TimeoutSeconds > seconds, $"kubelet timeout {kubelet.TimeoutSeconds}s must exceed livenessprobe's {seconds}s");
            Assert.True(kubelet.FailureThreshold * kubelet.PeriodSeconds >= 30, "a restart needs at least 30 s of failures");
        }
        var registrar = node.Single(c => c.Name == "node-driver-registrar");
        Assert.Contains("--http-endpoint=:9810", registrar.Args);
        Assert.Equal("/healthz", registrar.LivenessProbe.HttpGet.Path);
        Assert.True(registrar.LivenessProbe.TimeoutSeconds >= 3);
    }

    [Fact]
    public void Csi_node_plugin_is_one_privileged_daemonset_for_every_node_with_bidirectional_kubelet_mount_and_registrar()
    {
        var nodes = TestClusters.ThreeRacks();
        var edge = TestClusters.Node("edge-1", "zone-without-storage", storage: false);
        edge.Spec = new V1NodeSpec { Taints = [new V1Taint { Key = "dedicated", Value = "edge", Effect = "NoSchedule" }] };
        nodes.Add(edge);
        nodes.Add(TestClusters.Node("bare-1", null, storage: false));
        var objects = Build(nodes: nodes);
        var nodePlugins = objects.Select(o => o.Object).OfType<V1DaemonSet>().Where(d => d.Metadata.Labels[Names.ComponentLabel] == "csi-node").ToList();
        var ds = Assert.Single(nodePlugins);
        Assert.Equal("prod-csi-node", ds.Metadata.Name);
        Assert.All(nodes, n => Assert.True(DaemonSetSchedulingEmulation.RunsOn(ds, n), $"no node plugin on {n.Metadata.Name}"));
        var driver = ds.Spec.Template.Spec.Containers.Single(c => c.Name == "csi-driver");
        Assert.True(driver.SecurityContext.Privileged);
        Assert.Equal("Bidirectional", driver.VolumeMounts.Single(m => m.MountPath == "/var/lib/kubelet").MountPropagation);
        Assert.Contains(driver.VolumeMounts, m => m.MountPath == "/dev");
        Assert.DoesNotContain("--rack", driver.Args);
        var registrar = ds.Spec.Template.Spec.Containers.Single(c => c.Name == "node-driver-registrar");
        Assert.Contains("--kubelet-registration-path=/var/lib/kubelet/plugins/feitian.csi.k8s.io/csi.sock", registrar.Args);
        Assert.Contains(ds.Spec.Template.Spec.Volumes, v => v.HostPath?.Path == "/var/lib/kubelet/plugins_registry");
        // Chunk servers stay per rack, on storage nodes only.
        var chunkServers = DesiredState.ChunkServerDaemonSets(objects).ToList();
        Assert.Equal(3, chunkServers.Count);
        Assert.DoesNotContain(chunkServers, c => DaemonSetSchedulingEmulation.RunsOn(c, edge));
        // The selector cannot overlap with the per-rack node DaemonSets of earlier versions (selected by feitian.io/rack).
        Assert.Equal("all-nodes", ds.Spec.Selector.MatchLabels[Names.NodePluginSetLabel]);
        Assert.DoesNotContain(Names.RackLabel, ds.Spec.Selector.MatchLabels.Keys);
    }

    [Fact]
    public void Namespaced_objects_are_owned_by_the_cluster_and_cluster_scoped_ones_carry_the_owner_label()
    {
        var objects = Build(snapshotCrd: true);
        foreach (var d in objects)
        {
            if (d.Kind == ResourceKind.RoleBinding)
            {
                // In the lease namespace, which may not be the cluster's: the owner label, no owner reference.
                Assert.Null(d.Object.Metadata.OwnerReferences);
                Assert.Equal("storage.prod", d.Object.Metadata.Labels[Names.OwnerLabel]);
            }
            else if (d.Kind.Namespaced)
            {
                var owner = Assert.Single(d.Object.Metadata.OwnerReferences!);
                Assert.Equal(("StorageCluster", "prod", "uid-prod", true), (owner.Kind, owner.Name, owner.Uid, owner.Controller == true));
                Assert.Equal("storage", d.Namespace);
            }
            else
            {
                Assert.Null(d.Object.Metadata.OwnerReferences);
                Assert.Equal("storage.prod", d.Object.Metadata.Labels[Names.OwnerLabel]);
            }
            Assert.False(string.IsNullOrEmpty(d.Object.Metadata.Annotations[Names.SpecHashAnnotation]));
        }
    }

    [Fact]
    public void Storage_class_is_wait_for_first_consumer_expandable_default_with_driver_keys_only_and_a_snapshot_class_only_with_the_snapshot_crds()
    {
        var sc = Single<V1StorageClass>(Build(), "feitian");
        Assert.Equal(("feitian.csi.k8s.io", "WaitForFirstConsumer", true), (sc.Provisioner, sc.VolumeBindingMode, sc.AllowVolumeExpansion == true));
        Assert.Equal("true", sc.Metadata.Annotations["storageclass.kubernetes.io/is-default-class"]);
        Assert.Equal("3", sc.Parameters["replicas"]);
        // Only keys the driver accepts (external-provisioner passes all but csi.storage.k8s.io/* to CreateVolume).
        Assert.Equal(["csi.storage.k8s.io/fstype", "rackSpread", "replicas"], sc.Parameters.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("storage.prod", sc.Metadata.Labels[Names.OwnerLabel]);
        // The driver advertises CREATE_DELETE_SNAPSHOT: a class when the snapshot CRDs exist (without them it could not be stored).
        Assert.DoesNotContain(Build(), d => d.Kind == ResourceKind.SnapshotClass);
        var snapshotClass = (VolumeSnapshotClass)Assert.Single(Build(snapshotCrd: true), d => d.Kind == ResourceKind.SnapshotClass).Object;
        Assert.Equal(("feitian", "feitian.csi.k8s.io", "Delete"), (snapshotClass.Metadata.Name, snapshotClass.Driver, snapshotClass.DeletionPolicy));
        Assert.Null(snapshotClass.Parameters);
        // With a snapshot target, a second class whose snapshots are also backups to it.
        var withTarget = TestClusters.Minimal();
        withTarget.Spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = "http://minio.storage.svc:9000", Bucket = "snaps" };
        var classes = Build(withTarget, snapshotCrd: true).Where(d => d.Kind == ResourceKind.SnapshotClass).Select(d => (VolumeSnapshotClass)d.Object).ToList();
        Assert.Equal(["feitian", "feitian-backup"], classes.Select(k => k.Metadata.Name));
        Assert.Equal("true", classes[1].Parameters![StorageClassBuilder.BackupParameter]);
        Assert.Equal("feitian.csi.k8s.io", classes[1].Driver);
        var driver = Single<V1CSIDriver>(Build(), "feitian.csi.k8s.io");
        Assert.True(driver.Spec.AttachRequired);
    }

    [Fact]
    public void Spec_hash_is_stable_and_follows_the_spec()
    {
        string Hash(StorageCluster c) => Build(c).Single(d => d.Name == "prod-chunkserver-rack-a").Object.Metadata.Annotations[Names.SpecHashAnnotation];
        Assert.Equal(Hash(TestClusters.Minimal()), Hash(TestClusters.Minimal()));
        var changed = TestClusters.Minimal();
        changed.Spec.Images.ChunkServer = "example/chunkserver:2";
        Assert.NotEqual(Hash(TestClusters.Minimal()), Hash(changed));
    }

    private static IList<string> ChunkServerArgs(StorageCluster c) =>
        DesiredState.ChunkServerDaemonSets(Build(c)).First().Spec.Template.Spec.Containers[0].Args;

    private static string? ArgAfter(IList<string> args, string flag) => args.IndexOf(flag) is var i and >= 0 ? args[i + 1] : null;

    [Fact]
    public void Every_chunk_server_gets_the_rebuild_budget_in_plain_bytes_per_second()
    {
        // Defaults (the CRD's): 100Mi and 2.
        foreach (var ds in DesiredState.ChunkServerDaemonSets(Build()))
        {
            var args = ds.Spec.Template.Spec.Containers[0].Args;
            Assert.Equal("104857600", ArgAfter(args, "--rebuild-bandwidth"));
            Assert.Equal("2", ArgAfter(args, "--rebuild-concurrency"));
        }

        var c = TestClusters.Minimal();
        c.Spec.Rebuild = new RebuildSpec { BandwidthPerNode = "250M", ConcurrentPerNode = 5 };
        var args5 = ChunkServerArgs(c);
        Assert.Equal("250000000", ArgAfter(args5, "--rebuild-bandwidth"));
        Assert.Equal("5", ArgAfter(args5, "--rebuild-concurrency"));
        c.Spec.Rebuild.BandwidthPerNode = "1Gi";
        Assert.Equal("1073741824", ArgAfter(ChunkServerArgs(c), "--rebuild-bandwidth"));
        c.Spec.Rebuild.BandwidthPerNode = "0";
        Assert.Equal("0", ArgAfter(ChunkServerArgs(c), "--rebuild-bandwidth"));
    }

    [Fact]
    public void Rebuild_bandwidth_is_left_out_when_not_set_and_a_change_rolls_the_chunk_servers()
    {
        var c = TestClusters.Minimal();
        c.Spec.Rebuild.BandwidthPerNode = null!;
        var args = ChunkServerArgs(c);
        Assert.DoesNotContain("--rebuild-bandwidth", args);
        Assert.Equal("2", ArgAfter(args, "--rebuild-concurrency"));
        c.Spec.Rebuild.BandwidthPerNode = "";
        Assert.DoesNotContain("--rebuild-bandwidth", ChunkServerArgs(c));

        // The rollout finds pods on an old template by its hash.
        string TemplateHash(StorageCluster cluster) =>
            DesiredState.ChunkServerDaemonSets(Build(cluster)).First().Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];
        var slower = TestClusters.Minimal();
        slower.Spec.Rebuild.BandwidthPerNode = "10Mi";
        Assert.NotEqual(TemplateHash(TestClusters.Minimal()), TemplateHash(slower));
    }

    [Theory]
    [InlineData("fast", 2, "spec.rebuild.bandwidthPerNode 'fast'")]
    [InlineData("-1Mi", 2, "spec.rebuild.bandwidthPerNode '-1Mi'")]
    [InlineData("100m", 2, "spec.rebuild.bandwidthPerNode '100m'")]
    [InlineData("100Mi", 0, "spec.rebuild.concurrentPerNode must be between 1 and 64, got 0")]
    [InlineData("100Mi", 65, "spec.rebuild.concurrentPerNode must be between 1 and 64, got 65")]
    public void An_invalid_rebuild_spec_builds_nothing_and_says_which_field(string bandwidth, int concurrency, string message)
    {
        var c = TestClusters.Minimal();
        c.Spec.Rebuild = new RebuildSpec { BandwidthPerNode = bandwidth, ConcurrentPerNode = concurrency };
        Assert.Contains(RebuildFlags.Errors(c.Spec.Rebuild), e => e.Contains(message, StringComparison.Ordinal));
        var error = Assert.Throws<ArgumentException>(() => Build(c));
        Assert.Contains(message, error.Message);
    }

    private static IEnumerable<(string Owner, V1EnvVar Env)> AllEnv(IReadOnlyList<DesiredObject> objects) =>
        objects.Select(o => o.Object).SelectMany(o => o switch
        {
            V1Deployment d => d.Spec.Template.Spec.Containers.Select(ct => ($"{d.Metadata.Name}/{ct.Name}", ct)),
            V1DaemonSet d => d.Spec.Template.Spec.Containers.Select(ct => ($"{d.Metadata.Name}/{ct.Name}", ct)),
            V1StatefulSet s => s.Spec.Template.Spec.Containers.Select(ct => ($"{s.Metadata.Name}/{ct.Name}", ct)),
            _ => [],
        }).SelectMany(x => (x.Item2.Env ?? []).Select(e => (x.Item1, e)));

    [Fact]
    public void Only_the_csi_controller_driver_gets_the_snapshot_target_with_credentials_as_secret_references()
    {
        var c = TestClusters.Minimal();
        c.Spec.SnapshotTarget = new SnapshotTargetSpec
        {
            Endpoint = "https://s3.example.com:9000", Bucket = "feitian-backups", Region = "eu-west-1", CredentialsSecret = "s3-creds",
        };
        var objects = Build(c);
        // The masters also list the target's backups in the console (same credentials): that is the next test's subject.
        var env = AllEnv(objects).Where(x => x.Owner != "prod-master/master")
            .Where(x => x.Env.Name.StartsWith("FEITIAN_SNAPSHOT_", StringComparison.Ordinal) || x.Env.Name.StartsWith("AWS_", StringComparison.Ordinal)).ToList();
        Assert.All(env, x => Assert.Equal("prod-csi-controller/csi-driver", x.Owner));
        var byName = env.ToDictionary(x => x.Env.Name, x => x.Env);
        Assert.Equal(["FEITIAN_SNAPSHOT_ENDPOINT", "FEITIAN_SNAPSHOT_BUCKET", "FEITIAN_SNAPSHOT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], byName.Keys);
        Assert.Equal("https://s3.example.com:9000", byName["FEITIAN_SNAPSHOT_ENDPOINT"].Value);
        Assert.Equal("feitian-backups", byName["FEITIAN_SNAPSHOT_BUCKET"].Value);
        Assert.Equal("eu-west-1", byName["FEITIAN_SNAPSHOT_REGION"].Value);
        foreach (var (name, key) in new[] { ("AWS_ACCESS_KEY_ID", "accessKeyId"), ("AWS_SECRET_ACCESS_KEY", "secretAccessKey") })
        {
            // A reference the kubelet resolves, never a literal value in the pod spec.
            Assert.Null(byName[name].Value);
            var reference = byName[name].ValueFrom.SecretKeyRef;
            Assert.Equal(("s3-creds", key, true), (reference.Name, reference.Key, reference.Optional == true));
        }
    }

    [Fact]
    public void Masters_list_the_snapshot_target_backups_in_the_console_with_its_credentials_as_secret_references()
    {
        var plain = Single<V1StatefulSet>(Build(), "prod-master").Spec.Template.Spec.Containers[0];
        Assert.DoesNotContain(plain.Args, a => a.StartsWith("--backup-", StringComparison.Ordinal));
        Assert.DoesNotContain(plain.Env, e => e.Name.StartsWith("AWS_", StringComparison.Ordinal));

        var c = TestClusters.Minimal();
        c.Spec.SnapshotTarget = new SnapshotTargetSpec
        {
            Endpoint = "https://s3.example.com:9000", Bucket = "feitian-backups", Region = "eu-west-1", CredentialsSecret = "s3-creds",
        };
        var master = Single<V1StatefulSet>(Build(c), "prod-master").Spec.Template.Spec.Containers[0];
        var args = master.Args;
        Assert.Equal("s3://feitian-backups", args[args.IndexOf("--backup-target") + 1]);
        Assert.Equal("https://s3.example.com:9000", args[args.IndexOf("--backup-endpoint") + 1]);
        Assert.Equal("eu-west-1", args[args.IndexOf("--backup-region") + 1]);
        foreach (var (name, key) in new[] { ("AWS_ACCESS_KEY_ID", "accessKeyId"), ("AWS_SECRET_ACCESS_KEY", "secretAccessKey") })
        {
            var env = Assert.Single(master.Env, e => e.Name == name);
            Assert.Null(env.Value);
            Assert.Equal(("s3-creds", key, true), (env.ValueFrom.SecretKeyRef.Name, env.ValueFrom.SecretKeyRef.Key, env.ValueFrom.SecretKeyRef.Optional == true));
        }
    }

    [Fact]
    public void Snapshot_env_is_absent_without_a_target_and_region_and_credentials_only_when_set()
    {
        static bool Snapshotish(V1EnvVar e) => e.Name.StartsWith("FEITIAN_SNAPSHOT_", StringComparison.Ordinal) || e.Name.StartsWith("AWS_", StringComparison.Ordinal);
        Assert.DoesNotContain(AllEnv(Build()), x => Snapshotish(x.Env));

        var c = TestClusters.Minimal();
        c.Spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = "http://minio.storage.svc:9000", Bucket = "snaps" };
        var names = AllEnv(Build(c)).Where(x => Snapshotish(x.Env)).Select(x => x.Env.Name).ToList();
        Assert.Equal(["FEITIAN_SNAPSHOT_ENDPOINT", "FEITIAN_SNAPSHOT_BUCKET"], names);

        // The controller rolls when the target changes.
        string ControllerHash(StorageCluster cluster) =>
            Single<V1Deployment>(Build(cluster), "prod-csi-controller").Metadata.Annotations[Names.SpecHashAnnotation];
        Assert.NotEqual(ControllerHash(TestClusters.Minimal()), ControllerHash(c));
    }

    [Theory]
    [InlineData("s3.example.com", "snaps", "spec.snapshotTarget.endpoint 's3.example.com' is not an http(s) URL")]
    [InlineData("ftp://s3.example.com", "snaps", "is not an http(s) URL")]
    [InlineData("https://s3.example.com", "", "spec.snapshotTarget.bucket must not be empty")]
    public void An_invalid_snapshot_target_builds_nothing_and_says_which_field(string endpoint, string bucket, string message)
    {
        var c = TestClusters.Minimal();
        c.Spec.SnapshotTarget = new SnapshotTargetSpec { Endpoint = endpoint, Bucket = bucket };
        Assert.Contains(SnapshotTargetEnv.Errors(c.Spec.SnapshotTarget), e => e.Contains(message, StringComparison.Ordinal));
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => Build(c)).Message);
    }

    [Fact]
    public void Racks_that_are_not_dns_labels_get_safe_distinct_names()
    {
        Assert.Equal("rack-a", Names.DnsLabel("rack-a"));
        var a = Names.DnsLabel("eu-west-1a/Row_3");
        var b = Names.DnsLabel("eu-west-1a/Row.3");
        Assert.NotEqual(a, b);
        Assert.Matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", a);
        Assert.True(Names.DnsLabel(new string('x', 80)).Length <= 30);
    }

    [Theory]
    [InlineData(true, "auto", false, false, TlsIssuer.Operator)]
    [InlineData(true, "auto", true, false, TlsIssuer.CertManager)]
    [InlineData(true, "auto", true, true, TlsIssuer.Operator)]
    [InlineData(true, "operator", true, false, TlsIssuer.Operator)]
    [InlineData(true, "cert-manager", true, true, TlsIssuer.CertManager)]
    [InlineData(true, "cert-manager", false, false, TlsIssuer.CertManagerMissing)]
    [InlineData(false, "cert-manager", true, false, TlsIssuer.None)]
    public void Who_issues_the_certificates_follows_spec_tls_and_whether_cert_manager_or_an_operator_CA_is_there(
        bool enabled, string issuer, bool certManager, bool operatorCa, TlsIssuer expected)
    {
        var c = TestClusters.Minimal();
        c.Spec.Tls.Enabled = enabled;
        c.Spec.Tls.Issuer = issuer;
        var env = new ClusterEnvironment(TestClusters.ThreeRacks(), false, CertManagerCrdExists: certManager, OperatorCaExists: operatorCa);
        Assert.Equal(expected, env.Issuer(c));
        var kinds = DesiredState.Build(c, env).Select(d => d.Kind).ToList();
        Assert.Equal(expected == TlsIssuer.CertManager ? 1 + ComponentRolesCount : 0, kinds.Count(k => k == ResourceKind.Certificate));
    }

    private static readonly int ComponentRolesCount = FeitianK8s.Core.Security.ComponentRoles.All.Count;
}
