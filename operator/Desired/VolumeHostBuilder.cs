using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// The per-node volume host: a DaemonSet next to the node plugin on every node, running the CSI
/// image as the volume-host agent (<c>--mode volume-host</c>). The staged volumes' engines and
/// nbdfuse run in its container, so restarting or upgrading the node plugin never touches a
/// mounted volume. Its pods are replaced only by the operator (updateStrategy OnDelete), and only
/// on a node without volumes (<see cref="Reconcile.VolumeHostRolloutPlanner"/>): a pod's death
/// kills every engine in it. No liveness probe, for the same reason.
/// </summary>
public static class VolumeHostBuilder
{
    public const string Component = "volume-host";
    /// <summary>Host directory of the agent's socket and records; made 0700 by the agent, shared with the node plugin.</summary>
    public const string AgentDir = "/var/lib/feitian/volume-host";
    public const string AgentSocket = AgentDir + "/agent.sock";

    public static V1DaemonSet DaemonSet(StorageCluster c)
    {
        var images = c.Spec.Images;
        var agent = new V1Container
        {
            Name = "volume-host",
            Image = images.CsiDriver,
            ImagePullPolicy = images.PullPolicy,
            Args =
            [
                "--mode", "volume-host",
                "--agent-socket", AgentSocket,
                "--node-id", "$(NODE_NAME)",
                "--masters", string.Join(",", Names.MasterAddresses(c).Select(a => $"{TlsMount.Scheme(c)}://{a}")),
                // The engines it starts are Pangu clients of the csi-node role, as the node plugin is.
                .. TlsMount.Args(c),
            ],
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName")],
            // nbdfuse mounts FUSE filesystems and opens /dev/fuse: the host's privileges.
            SecurityContext = new V1SecurityContext { Privileged = true, AllowPrivilegeEscalation = true },
            VolumeMounts =
            [
                new V1VolumeMount { Name = "agent-dir", MountPath = AgentDir },
                // Bidirectional: nbdfuse's FUSE mounts under the state dir must reach the host, and through it the node plugin's losetup.
                new V1VolumeMount { Name = "state-dir", MountPath = CsiBuilder.NodeStateDir, MountPropagation = "Bidirectional" },
                new V1VolumeMount { Name = "fuse", MountPath = "/dev/fuse" },
                .. TlsMount.Mounts(c),
            ],
        };
        var labels = Names.Labels(c, Component);
        var template = new V1PodTemplateSpec
        {
            Metadata = new V1ObjectMeta { Labels = labels },
            Spec = new V1PodSpec
            {
                ServiceAccountName = Names.NodeServiceAccount(c),
                AutomountServiceAccountToken = false,
                // Wherever the node plugin runs.
                Tolerations = [new V1Toleration { OperatorProperty = "Exists" }],
                Containers = [agent],
                Volumes =
                [
                    HostPath("agent-dir", AgentDir, "DirectoryOrCreate"),
                    HostPath("state-dir", CsiBuilder.NodeStateDir, "DirectoryOrCreate"),
                    HostPath("fuse", "/dev/fuse", "CharDevice"),
                    .. TlsMount.Volumes(c, Core.Security.ComponentRoles.CsiNode),
                ],
                TerminationGracePeriodSeconds = 60,
            },
        };
        // The template hash lets the drain-based rollout find pods still running an old template.
        template.Metadata.Annotations = new Dictionary<string, string> { [Names.TemplateHashAnnotation] = SpecHash.Of(template) };
        return new V1DaemonSet
        {
            ApiVersion = "apps/v1",
            Kind = "DaemonSet",
            Metadata = Meta.Owned(c, Names.VolumeHost(c), Component),
            Spec = new V1DaemonSetSpec
            {
                Selector = new V1LabelSelector { MatchLabels = Names.Selector(c, Component) },
                // Never rolled by Kubernetes: a pod's death ends every engine in it.
                UpdateStrategy = new V1DaemonSetUpdateStrategy { Type = "OnDelete" },
                Template = template,
            },
        };
    }

    private static V1Volume HostPath(string name, string path, string type) =>
        new() { Name = name, HostPath = new V1HostPathVolumeSource { Path = path, Type = type } };
}
