using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>Masters: a StatefulSet with one pod per node (required anti-affinity), its headless Service (gRPC, Raft and the web console), a PDB and a metrics Service.</summary>
public static class MasterBuilder
{
    public const string Component = "master";

    public static V1StatefulSet StatefulSet(StorageCluster c)
    {
        var name = Names.Master(c);
        var spec = c.Spec.Masters;
        var selector = Names.Selector(c, Component);
        var container = new V1Container
        {
            Name = "master",
            Image = c.Spec.Images.Master,
            ImagePullPolicy = c.Spec.Images.PullPolicy,
            Args =
            [
                "--data", "/var/lib/feitian/master",
                "--listen", "0.0.0.0",
                "--port", spec.Port.ToString(),
                "--http-port", spec.HttpPort.ToString(),
                "--replicas", c.Spec.Replication.Factor.ToString(),
                // The Raft group: every member's stable name; this pod's own name from the downward API.
                "--peers", string.Join(",", Names.MasterRaftPeers(c)),
                "--raft-endpoint", $"$(POD_NAME).{Names.Master(c)}.{c.Metadata.NamespaceProperty}.svc:{spec.RaftPort}",
                "--advertise", $"{TlsMount.Scheme(c)}://$(POD_NAME).{Names.Master(c)}.{c.Metadata.NamespaceProperty}.svc:{spec.Port}",
                // Where a follower redirects the web console: the leader pod's stable name.
                "--advertise-http", $"http://$(POD_NAME).{Names.Master(c)}.{c.Metadata.NamespaceProperty}.svc:{spec.HttpPort}",
                .. RebuildFlags.MasterArgs(c.Spec.Rebuild ?? new RebuildSpec()),
                // The web console lists the backups of spec.snapshotTarget.
                .. SnapshotTargetEnv.MasterArgs(c.Spec.SnapshotTarget),
                // Mutual TLS on gRPC and Raft; the web console's HTTP port stays plain.
                .. TlsMount.Args(c),
            ],
            Env =
            [
                new V1EnvVar { Name = "POD_NAME", ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.name" } } },
                .. SnapshotTargetEnv.CredentialsEnv(c.Spec.SnapshotTarget),
            ],
            Ports =
            [
                new V1ContainerPort { Name = "grpc", ContainerPort = spec.Port },
                new V1ContainerPort { Name = "http-metrics", ContainerPort = spec.HttpPort },
                new V1ContainerPort { Name = "raft", ContainerPort = spec.RaftPort },
            ],
            VolumeMounts = [new V1VolumeMount { Name = "data", MountPath = "/var/lib/feitian/master" }, .. TlsMount.Mounts(c)],
            ReadinessProbe = HttpProbe("/healthz", spec.HttpPort, 5),
            LivenessProbe = HttpProbe("/healthz", spec.HttpPort, 15),
            Resources = c.Spec.Resources.Master,
        };
        var template = new V1PodTemplateSpec
        {
            Metadata = new V1ObjectMeta { Labels = Names.Labels(c, Component) },
            Spec = new V1PodSpec
            {
                Affinity = new V1Affinity
                {
                    // Two masters on one node would let one node failure take out a Raft majority.
                    PodAntiAffinity = new V1PodAntiAffinity
                    {
                        RequiredDuringSchedulingIgnoredDuringExecution =
                        [
                            new V1PodAffinityTerm
                            {
                                LabelSelector = new V1LabelSelector { MatchLabels = selector },
                                TopologyKey = "kubernetes.io/hostname",
                            },
                        ],
                        PreferredDuringSchedulingIgnoredDuringExecution =
                        [
                            new V1WeightedPodAffinityTerm
                            {
                                Weight = 100,
                                PodAffinityTerm = new V1PodAffinityTerm
                                {
                                    LabelSelector = new V1LabelSelector { MatchLabels = selector },
                                    TopologyKey = c.Spec.ChunkServers.RackLabel,
                                },
                            },
                        ],
                    },
                },
                Containers = [container],
                Volumes = c.Spec.Tls.Enabled ? [.. TlsMount.Volumes(c, Core.Security.ComponentRoles.Master)] : null,
                TerminationGracePeriodSeconds = 30,
            },
        };
        // The template hash lets the rollout find pods still running an old template.
        template.Metadata.Annotations = new Dictionary<string, string> { [Names.TemplateHashAnnotation] = SpecHash.Of(template) };
        return new V1StatefulSet
        {
            ApiVersion = "apps/v1",
            Kind = "StatefulSet",
            Metadata = Meta.Owned(c, name, Component),
            Spec = new V1StatefulSetSpec
            {
                Replicas = spec.Replicas,
                ServiceName = name,
                PodManagementPolicy = "Parallel",
                Selector = new V1LabelSelector { MatchLabels = selector },
                // Pods are replaced by the operator (MasterRolloutPlanner): one at a time, followers first, the
                // leader last, only while every member answers and the followers have caught up.
                UpdateStrategy = new V1StatefulSetUpdateStrategy { Type = "OnDelete" },
                Template = template,
                VolumeClaimTemplates =
                [
                    new V1PersistentVolumeClaim
                    {
                        Metadata = new V1ObjectMeta { Name = "data", Labels = Names.Labels(c, Component) },
                        Spec = new V1PersistentVolumeClaimSpec
                        {
                            AccessModes = ["ReadWriteOnce"],
                            StorageClassName = spec.StorageClassName,
                            Resources = new V1VolumeResourceRequirements
                            {
                                Requests = new Dictionary<string, ResourceQuantity> { ["storage"] = new ResourceQuantity(spec.Storage) },
                            },
                        },
                    },
                ],
            },
        };
    }

    public static V1Service HeadlessService(StorageCluster c) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Meta.Owned(c, Names.Master(c), Component),
        Spec = new V1ServiceSpec
        {
            ClusterIP = "None",
            // Peers must find each other before they are ready (Raft bootstrap).
            PublishNotReadyAddresses = true,
            Selector = Names.Selector(c, Component),
            Ports =
            [
                new V1ServicePort { Name = "grpc", Port = c.Spec.Masters.Port, TargetPort = c.Spec.Masters.Port },
                new V1ServicePort { Name = "raft", Port = c.Spec.Masters.RaftPort, TargetPort = c.Spec.Masters.RaftPort },
                // The web console (and /metrics, /healthz): `kubectl port-forward svc/NAME-master 8080:http`.
                new V1ServicePort { Name = "http", Port = c.Spec.Masters.HttpPort, TargetPort = c.Spec.Masters.HttpPort },
            ],
        },
    };

    public static V1Service MetricsService(StorageCluster c) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Meta.Owned(c, Names.MasterMetrics(c), Component),
        Spec = new V1ServiceSpec
        {
            Selector = Names.Selector(c, Component),
            Ports = [new V1ServicePort { Name = "http-metrics", Port = c.Spec.Masters.HttpPort, TargetPort = c.Spec.Masters.HttpPort }],
        },
    };

    /// <summary>Voluntary disruptions may never take the masters below a majority.</summary>
    public static V1PodDisruptionBudget DisruptionBudget(StorageCluster c) => new()
    {
        ApiVersion = "policy/v1",
        Kind = "PodDisruptionBudget",
        Metadata = Meta.Owned(c, Names.Master(c), Component),
        Spec = new V1PodDisruptionBudgetSpec
        {
            MinAvailable = c.Spec.Masters.Replicas / 2 + 1,
            Selector = new V1LabelSelector { MatchLabels = Names.Selector(c, Component) },
        },
    };

    internal static V1Probe HttpProbe(string path, int port, int periodSeconds) => new()
    {
        HttpGet = new V1HTTPGetAction { Path = path, Port = port },
        PeriodSeconds = periodSeconds,
        FailureThreshold = 3,
    };
}
