using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>The CSI controller Deployment, the node plugin DaemonSets and the CSIDriver object.</summary>
public static class CsiBuilder
{
    public const string ControllerComponent = "csi-controller";
    public const string NodeComponent = "csi-node";
    public const string KubeletDir = "/var/lib/kubelet";
    public static readonly string PluginDir = $"{KubeletDir}/plugins/{Names.CsiDriverName}";

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

    public static V1Deployment ControllerDeployment(StorageCluster c)
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
            ],
            // Snapshots and backups are the controller's work; only it gets the object-store target.
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName"), .. SnapshotTargetEnv.For(c.Spec.SnapshotTarget)],
            Ports = [new V1ContainerPort { Name = "healthz", ContainerPort = 9808 }],
            LivenessProbe = MasterBuilder.HttpProbe("/healthz", 9808, 10),
            VolumeMounts = [socket],
            Resources = c.Spec.Resources.CsiController,
        };
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
                        Containers =
                        [
                            driver,
                            Sidecar("csi-provisioner", images.CsiProvisioner, "--leader-election", "--feature-gates=Topology=true", "--extra-create-metadata", "--timeout=120s"),
                            Sidecar("csi-attacher", images.CsiAttacher, "--leader-election", "--timeout=120s"),
                            Sidecar("csi-resizer", images.CsiResizer, "--leader-election", "--timeout=120s"),
                            Sidecar("csi-snapshotter", images.CsiSnapshotter, "--leader-election", "--timeout=300s"),
                            Sidecar("liveness-probe", images.LivenessProbe, "--health-port=9808"),
                        ],
                        Volumes = [new V1Volume { Name = "socket-dir", EmptyDir = new V1EmptyDirVolumeSource() }],
                    },
                },
            },
        };
    }

    /// <summary>
    /// The node plugin for the nodes of one rack (or, with <paramref name="rack"/> null, for nodes
    /// without a rack label, which can consume volumes but report no rack topology).
    /// </summary>
    public static V1DaemonSet NodeDaemonSet(StorageCluster c, string? rack)
    {
        var images = c.Spec.Images;
        var rackLabel = c.Spec.ChunkServers.RackLabel;
        var selector = Names.Selector(c, NodeComponent);
        selector[Names.RackLabel] = rack is null ? "none" : Names.DnsLabel(rack);
        var labels = Names.Labels(c, NodeComponent);
        labels[Names.RackLabel] = selector[Names.RackLabel];
        var args = new List<string>
        {
            "--endpoint", "unix:///csi/csi.sock",
            "--mode", "node",
            "--node-id", "$(NODE_NAME)",
            "--masters", Names.MasterAddress(c),
            "--state-dir", "/var/lib/feitian/csi",
        };
        if (rack is not null)
        {
            args.AddRange(["--rack", rack]);
        }
        var socket = new V1VolumeMount { Name = "plugin-dir", MountPath = "/csi" };
        var driver = new V1Container
        {
            Name = "csi-driver",
            Image = images.CsiDriver,
            ImagePullPolicy = images.PullPolicy,
            Args = args,
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName")],
            // Mounting filesystems and attaching nbd/loop devices needs the host's privileges.
            SecurityContext = new V1SecurityContext { Privileged = true, AllowPrivilegeEscalation = true },
            Ports = [new V1ContainerPort { Name = "healthz", ContainerPort = 9809 }],
            LivenessProbe = MasterBuilder.HttpProbe("/healthz", 9809, 10),
            VolumeMounts =
            [
                socket,
                // Bidirectional: mounts the driver makes under the kubelet dir must be seen by the kubelet and pods.
                new V1VolumeMount { Name = "kubelet-dir", MountPath = KubeletDir, MountPropagation = "Bidirectional" },
                new V1VolumeMount { Name = "dev-dir", MountPath = "/dev", MountPropagation = "HostToContainer" },
                new V1VolumeMount { Name = "state-dir", MountPath = "/var/lib/feitian/csi" },
            ],
            Resources = c.Spec.Resources.CsiNode,
        };
        var registrar = new V1Container
        {
            Name = "node-driver-registrar",
            Image = images.NodeDriverRegistrar,
            ImagePullPolicy = images.PullPolicy,
            Args = ["--csi-address=/csi/csi.sock", $"--kubelet-registration-path={PluginDir}/csi.sock", "--v=2"],
            VolumeMounts = [socket, new V1VolumeMount { Name = "registration-dir", MountPath = "/registration" }],
        };
        var liveness = new V1Container
        {
            Name = "liveness-probe",
            Image = images.LivenessProbe,
            ImagePullPolicy = images.PullPolicy,
            Args = ["--csi-address=/csi/csi.sock", "--health-port=9809"],
            VolumeMounts = [socket],
        };
        var requirement = rack is null
            ? new V1NodeSelectorRequirement { Key = rackLabel, OperatorProperty = "DoesNotExist" }
            : new V1NodeSelectorRequirement { Key = rackLabel, OperatorProperty = "In", Values = [rack] };
        return new V1DaemonSet
        {
            ApiVersion = "apps/v1",
            Kind = "DaemonSet",
            Metadata = Meta.Owned(c, Names.CsiNode(c, rack), NodeComponent),
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
                        Affinity = new V1Affinity
                        {
                            NodeAffinity = new V1NodeAffinity
                            {
                                RequiredDuringSchedulingIgnoredDuringExecution = new V1NodeSelector
                                {
                                    NodeSelectorTerms = [new V1NodeSelectorTerm { MatchExpressions = [requirement] }],
                                },
                            },
                        },
                        Tolerations = [new V1Toleration { OperatorProperty = "Exists" }],
                        Containers = [driver, registrar, liveness],
                        Volumes =
                        [
                            HostPath("plugin-dir", PluginDir, "DirectoryOrCreate"),
                            HostPath("registration-dir", $"{KubeletDir}/plugins_registry", "Directory"),
                            HostPath("kubelet-dir", KubeletDir, "Directory"),
                            HostPath("dev-dir", "/dev", "Directory"),
                            HostPath("state-dir", "/var/lib/feitian/csi", "DirectoryOrCreate"),
                        ],
                    },
                },
            },
        };
    }

    public static V1CSIDriver CsiDriver(StorageCluster c) => new()
    {
        ApiVersion = "storage.k8s.io/v1",
        Kind = "CSIDriver",
        Metadata = Meta.ClusterScoped(c, Names.CsiDriverName, ControllerComponent),
        Spec = new V1CSIDriverSpec
        {
            AttachRequired = true,
            PodInfoOnMount = false,
            FsGroupPolicy = "File",
            VolumeLifecycleModes = ["Persistent"],
        },
    };

    private static V1Volume HostPath(string name, string path, string type) =>
        new() { Name = name, HostPath = new V1HostPathVolumeSource { Path = path, Type = type } };
}
