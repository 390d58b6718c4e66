using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>The CSI controller Deployment, the node plugin DaemonSet, the CSIDriver object and the sidecars' RBAC binding.</summary>
public static class CsiBuilder
{
    public const string ControllerComponent = "csi-controller";
    public const string NodeComponent = "csi-node";
    public const string KubeletDir = "/var/lib/kubelet";
    public static readonly string PluginDir = $"{KubeletDir}/plugins/{Names.CsiDriverName}";
    /// <summary>Host directory of the node plugin's records and the volumes' NBD sockets and nbdfuse mounts (shared with the volume host).</summary>
    public const string NodeStateDir = "/var/lib/feitian/csi";

    public static V1ServiceAccount ServiceAccount(StorageCluster c) => new()
    {
        ApiVersion = "v1",
        Kind = "ServiceAccount",
        Metadata = Meta.Owned(c, Names.ServiceAccount(c), ControllerComponent),
    };

    public static V1ServiceAccount NodeServiceAccount(StorageCluster c) => new()
    {
        ApiVersion = "v1",
        Kind = "ServiceAccount",
        Metadata = Meta.Owned(c, Names.NodeServiceAccount(c), NodeComponent),
    };

    /// <summary>Binds a CSI ServiceAccount of this cluster to the ClusterRole the chart installed for it.</summary>
    public static V1ClusterRoleBinding RoleBinding(StorageCluster c, string clusterRole, string serviceAccount, string component) => new()
    {
        ApiVersion = "rbac.authorization.k8s.io/v1",
        Kind = "ClusterRoleBinding",
        Metadata = Meta.ClusterScoped(c, Names.RoleBinding(c, clusterRole), component),
        RoleRef = new V1RoleRef { ApiGroup = "rbac.authorization.k8s.io", Kind = "ClusterRole", Name = clusterRole },
        Subjects = [new Rbacv1Subject { Kind = "ServiceAccount", Name = serviceAccount, NamespaceProperty = c.Metadata.NamespaceProperty }],
    };

    /// <summary>Port of the controller's livenessprobe sidecar (kubelet probes the driver through it).</summary>
    public const int ControllerHealthPort = 9808;
    /// <summary>Port of the node plugin's livenessprobe sidecar.</summary>
    public const int NodeHealthPort = 9809;
    /// <summary>Port of node-driver-registrar's own health check (its registration socket is there).</summary>
    public const int RegistrarHealthPort = 9810;
    /// <summary>Port of the node plugin's /metrics, with every staged volume's per-volume series (its volume hosts open no port).</summary>
    public const int NodeMetricsPort = 9811;

    /// <summary>
    /// How long livenessprobe waits for the driver's Probe. kubelet's timeout is longer, so it
    /// hears livenessprobe's answer rather than timing out first.
    /// </summary>
    public const string ProbeTimeout = "3s";

    /// <summary>
    /// The controller Deployment: the driver, one sidecar per capability it advertises
    /// (<see cref="CsiSidecars"/>) and livenessprobe. The sidecars elect their leaders with Leases
    /// in <paramref name="leaseNamespace"/>, where the chart's namespaced Role allows it.
    /// </summary>
    public static V1Deployment ControllerDeployment(StorageCluster c, string leaseNamespace)
    {
        var images = c.Spec.Images;
        var socket = new V1VolumeMount { Name = "socket-dir", MountPath = "/csi" };
        V1Container Sidecar(string name, string image, params string[] extraArgs) => new()
        {
            Name = name,
            Image = image,
            ImagePullPolicy = images.PullPolicy,
            Args = ["--csi-address=/csi/csi.sock", "--v=2", .. extraArgs],
            VolumeMounts = [socket],
        };
        string[] election = ["--leader-election", $"--leader-election-namespace={leaseNamespace}"];
        var driver = new V1Container
        {
            Name = "csi-driver",
            Image = images.CsiDriver,
            ImagePullPolicy = images.PullPolicy,
            Args =
            [
                "--endpoint", "unix:///csi/csi.sock",
                "--mode", "controller",
                "--node-id", "$(NODE_NAME)",
                "--masters", Names.MasterAddress(c),
                .. TlsMount.Args(c),
            ],
            // Snapshots and backups are the controller's work; only it gets the object-store target.
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName"), .. SnapshotTargetEnv.For(c.Spec.SnapshotTarget)],
            Ports = [new V1ContainerPort { Name = "healthz", ContainerPort = ControllerHealthPort }],
            LivenessProbe = LivenessProbe(ControllerHealthPort),
            VolumeMounts = [socket, .. TlsMount.Mounts(c)],
            Resources = c.Spec.Resources.CsiController,
        };
        var containers = new List<V1Container> { driver };
        if (CsiSidecars.Deployed(CsiSidecars.Provisioner))
        {
            containers.Add(Sidecar(CsiSidecars.Provisioner, images.CsiProvisioner, [.. election, "--timeout=120s"]));
        }
        if (CsiSidecars.Deployed(CsiSidecars.Attacher))
        {
            containers.Add(Sidecar(CsiSidecars.Attacher, images.CsiAttacher, [.. election, "--timeout=120s"]));
        }
        if (CsiSidecars.Deployed(CsiSidecars.Resizer))
        {
            containers.Add(Sidecar(CsiSidecars.Resizer, images.CsiResizer, [.. election, "--timeout=120s"]));
        }
        if (CsiSidecars.Deployed(CsiSidecars.Snapshotter))
        {
            containers.Add(Sidecar(CsiSidecars.Snapshotter, images.CsiSnapshotter, [.. election, "--timeout=300s"]));
        }
        containers.Add(Sidecar("liveness-probe", images.LivenessProbe, $"--http-endpoint=:{ControllerHealthPort}", $"--probe-timeout={ProbeTimeout}"));
        return new V1Deployment
        {
            ApiVersion = "apps/v1",
            Kind = "Deployment",
            Metadata = Meta.Owned(c, Names.CsiController(c), ControllerComponent),
            Spec = new V1DeploymentSpec
            {
                Replicas = 1,
                Selector = new V1LabelSelector { MatchLabels = Names.Selector(c, ControllerComponent) },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = Names.Labels(c, ControllerComponent) },
                    Spec = new V1PodSpec
                    {
                        ServiceAccountName = Names.ServiceAccount(c),
                        Containers = containers,
                        Volumes = [new V1Volume { Name = "socket-dir", EmptyDir = new V1EmptyDirVolumeSource() }, .. TlsMount.Volumes(c, Core.Security.ComponentRoles.CsiController)],
                    },
                },
            },
        };
    }

    /// <summary>The node plugins' /metrics (per-volume engine and NBD series), scraped by the chart's ServiceMonitor through port http-metrics.</summary>
    public static V1Service NodeMetricsService(StorageCluster c)
    {
        var selector = Names.Selector(c, NodeComponent);
        selector[Names.NodePluginSetLabel] = Names.NodePluginSetValue;
        return new V1Service
        {
            ApiVersion = "v1",
            Kind = "Service",
            Metadata = Meta.Owned(c, Names.CsiNodeMetrics(c), NodeComponent),
            Spec = new V1ServiceSpec
            {
                Selector = selector,
                Ports = [new V1ServicePort { Name = "http-metrics", Port = NodeMetricsPort, TargetPort = NodeMetricsPort }],
            },
        };
    }

    /// <summary>
    /// The node plugin, one DaemonSet for every node of the cluster (any node may run a pod with
    /// a volume: it reaches the chunk servers over the network), tolerating every taint. Its pods
    /// are selected by <see cref="Names.NodePluginSetLabel"/> too, so the selector of the per-rack
    /// node DaemonSets of earlier versions (pruned by the reconciler) never overlaps with it.
    /// </summary>
    public static V1DaemonSet NodeDaemonSet(StorageCluster c)
    {
        var images = c.Spec.Images;
        var selector = Names.Selector(c, NodeComponent);
        selector[Names.NodePluginSetLabel] = Names.NodePluginSetValue;
        var labels = Names.Labels(c, NodeComponent);
        labels[Names.NodePluginSetLabel] = Names.NodePluginSetValue;
        var socket = new V1VolumeMount { Name = "plugin-dir", MountPath = "/csi" };
        var driver = new V1Container
        {
            Name = "csi-driver",
            Image = images.CsiDriver,
            ImagePullPolicy = images.PullPolicy,
            Args =
            [
                "--endpoint", "unix:///csi/csi.sock",
                "--mode", "node",
                "--node-id", "$(NODE_NAME)",
                "--masters", Names.MasterAddress(c),
                "--state-dir", NodeStateDir,
                // The volumes' engines and nbdfuse run in the volume-host DaemonSet's pods, not in this container.
                "--volume-host-agent", VolumeHostBuilder.AgentSocket,
                "--metrics-port", NodeMetricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--node-lease-seconds", c.Spec.NodeFailover.EffectiveLeaseSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
                // Handed on to the volume hosts it starts (same container, same files).
                .. TlsMount.Args(c),
            ],
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName")],
            // Mounting filesystems and attaching nbd/loop devices needs the host's privileges.
            SecurityContext = new V1SecurityContext { Privileged = true, AllowPrivilegeEscalation = true },
            Ports =
            [
                new V1ContainerPort { Name = "healthz", ContainerPort = NodeHealthPort },
                new V1ContainerPort { Name = "http-metrics", ContainerPort = NodeMetricsPort },
            ],
            LivenessProbe = LivenessProbe(NodeHealthPort),
            VolumeMounts =
            [
                socket,
                // Bidirectional: mounts the driver makes under the kubelet dir must be seen by the kubelet and pods.
                new V1VolumeMount { Name = "kubelet-dir", MountPath = KubeletDir, MountPropagation = "Bidirectional" },
                new V1VolumeMount { Name = "dev-dir", MountPath = "/dev", MountPropagation = "HostToContainer" },
                // Bidirectional: the volume host's nbdfuse mounts here must be seen (for losetup), and unmounts made here reach the host.
                new V1VolumeMount { Name = "state-dir", MountPath = NodeStateDir, MountPropagation = "Bidirectional" },
                new V1VolumeMount { Name = "volume-host-dir", MountPath = VolumeHostBuilder.AgentDir },
                .. TlsMount.Mounts(c),
            ],
            Resources = c.Spec.Resources.CsiNode,
        };
        var registrar = new V1Container
        {
            Name = "node-driver-registrar",
            Image = images.NodeDriverRegistrar,
            ImagePullPolicy = images.PullPolicy,
            Args =
            [
                "--csi-address=/csi/csi.sock", $"--kubelet-registration-path={PluginDir}/csi.sock",
                $"--http-endpoint=:{RegistrarHealthPort}", "--v=2",
            ],
            Ports = [new V1ContainerPort { Name = "registrar-hz", ContainerPort = RegistrarHealthPort }],
            LivenessProbe = LivenessProbe(RegistrarHealthPort),
            VolumeMounts = [socket, new V1VolumeMount { Name = "registration-dir", MountPath = "/registration" }],
        };
        var liveness = new V1Container
        {
            Name = "liveness-probe",
            Image = images.LivenessProbe,
            ImagePullPolicy = images.PullPolicy,
            Args = ["--csi-address=/csi/csi.sock", $"--http-endpoint=:{NodeHealthPort}", $"--probe-timeout={ProbeTimeout}"],
            VolumeMounts = [socket],
        };
        return new V1DaemonSet
        {
            ApiVersion = "apps/v1",
            Kind = "DaemonSet",
            Metadata = Meta.Owned(c, Names.CsiNode(c), NodeComponent),
            Spec = new V1DaemonSetSpec
            {
                Selector = new V1LabelSelector { MatchLabels = selector },
                UpdateStrategy = new V1DaemonSetUpdateStrategy
                {
                    Type = "RollingUpdate",
                    RollingUpdate = new V1RollingUpdateDaemonSet { MaxUnavailable = 1 },
                },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = labels },
                    Spec = new V1PodSpec
                    {
                        ServiceAccountName = Names.NodeServiceAccount(c),
                        // Any node, whatever its taints (NoSchedule, NoExecute, control plane): a pod
                        // that lands there may mount a volume, and a running plugin must stay to unmount.
                        Tolerations = [new V1Toleration { OperatorProperty = "Exists" }],
                        Containers = [driver, registrar, liveness],
                        Volumes =
                        [
                            HostPath("plugin-dir", PluginDir, "DirectoryOrCreate"),
                            HostPath("registration-dir", $"{KubeletDir}/plugins_registry", "Directory"),
                            HostPath("kubelet-dir", KubeletDir, "Directory"),
                            HostPath("dev-dir", "/dev", "Directory"),
                            HostPath("state-dir", NodeStateDir, "DirectoryOrCreate"),
                            HostPath("volume-host-dir", VolumeHostBuilder.AgentDir, "DirectoryOrCreate"),
                            .. TlsMount.Volumes(c, Core.Security.ComponentRoles.CsiNode),
                        ],
                    },
                },
            },
        };
    }

    /// <summary>
    /// kubelet's liveness probe of a CSI container, through a health endpoint: a 5 s timeout (more
    /// than livenessprobe's own <see cref="ProbeTimeout"/>), restart only after 5 failures 10 s apart.
    /// </summary>
    public static V1Probe LivenessProbe(int port) => new()
    {
        HttpGet = new V1HTTPGetAction { Path = "/healthz", Port = port },
        InitialDelaySeconds = 10,
        PeriodSeconds = 10,
        TimeoutSeconds = 5,
        FailureThreshold = 5,
    };

    /// <summary>
    /// Lets the controller sidecars of this cluster take their leader-election Leases in the
    /// lease namespace, through the namespaced Role the chart installs there. It lives outside the
    /// cluster's namespace whenever that differs, so it carries the owner label and the operator
    /// deletes it itself.
    /// </summary>
    public static V1RoleBinding LeaderElectionRoleBinding(StorageCluster c, string role, string leaseNamespace)
    {
        var meta = Meta.ClusterScoped(c, Names.RoleBinding(c, role), ControllerComponent);
        meta.NamespaceProperty = leaseNamespace;
        return new V1RoleBinding
        {
            ApiVersion = "rbac.authorization.k8s.io/v1",
            Kind = "RoleBinding",
            Metadata = meta,
            RoleRef = new V1RoleRef { ApiGroup = "rbac.authorization.k8s.io", Kind = "Role", Name = role },
            Subjects = [new Rbacv1Subject { Kind = "ServiceAccount", Name = Names.ServiceAccount(c), NamespaceProperty = c.Metadata.NamespaceProperty }],
        };
    }

    public static V1CSIDriver CsiDriver(StorageCluster c) => new()
    {
        ApiVersion = "storage.k8s.io/v1",
        Kind = "CSIDriver",
        Metadata = Meta.ClusterScoped(c, Names.CsiDriverName, ControllerComponent),
        Spec = new V1CSIDriverSpec
        {
            AttachRequired = CsiSidecars.AttachRequired,
            PodInfoOnMount = false,
            FsGroupPolicy = "File",
            VolumeLifecycleModes = ["Persistent"],
        },
    };

    private static V1Volume HostPath(string name, string path, string type) =>
        new() { Name = name, HostPath = new V1HostPathVolumeSource { Path = path, Type = type } };
}
