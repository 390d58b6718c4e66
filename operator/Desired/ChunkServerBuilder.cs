using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// Chunk servers: one DaemonSet per rack value found among the storage nodes, so each pod is told
/// its rack on the command line and the master can place replicas on distinct racks.
/// </summary>
public static class ChunkServerBuilder
{
    public const string Component = "chunkserver";

    public static V1DaemonSet DaemonSet(StorageCluster c, string rack)
    {
        var spec = c.Spec.ChunkServers;
        var selector = Names.Selector(c, Component);
        selector[Names.RackLabel] = Names.DnsLabel(rack);
        var labels = Names.Labels(c, Component);
        labels[Names.RackLabel] = Names.DnsLabel(rack);
        var dataPaths = spec.DataDirs.Select((_, i) => $"/data/{i}").ToList();
        var container = new V1Container
        {
            Name = "chunkserver",
            Image = c.Spec.Images.ChunkServer,
            ImagePullPolicy = c.Spec.Images.PullPolicy,
            Args =
            [
                "--data", string.Join(",", dataPaths),
                "--master", string.Join(",", Names.MasterAddresses(c).Select(a => $"{TlsMount.Scheme(c)}://{a}")),
                "--node", "$(NODE_NAME)",
                "--rack", rack,
                "--listen", "0.0.0.0",
                "--port", spec.Port.ToString(),
                "--http-port", spec.HttpPort.ToString(),
                // The address clients dial: the pod IP (listening on 0.0.0.0 says nothing reachable).
                "--advertise", $"{TlsMount.Scheme(c)}://$(POD_IP):{spec.Port}",
                .. RebuildFlags.Args(c.Spec.Rebuild ?? new RebuildSpec()),
                .. TlsMount.Args(c),
            ],
            Env = [Meta.FieldEnv("NODE_NAME", "spec.nodeName"), Meta.FieldEnv("POD_IP", "status.podIP")],
            Ports =
            [
                new V1ContainerPort { Name = "grpc", ContainerPort = spec.Port, HostPort = spec.Port },
                new V1ContainerPort { Name = "http-metrics", ContainerPort = spec.HttpPort },
            ],
            VolumeMounts = [.. dataPaths.Select((p, i) => new V1VolumeMount { Name = $"data-{i}", MountPath = p }), .. TlsMount.Mounts(c)],
            ReadinessProbe = MasterBuilder.HttpProbe("/healthz", spec.HttpPort, 5),
            LivenessProbe = MasterBuilder.HttpProbe("/healthz", spec.HttpPort, 15),
            Resources = c.Spec.Resources.ChunkServer,
        };
        var nodeTerms = spec.NodeSelector
            .OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => new V1NodeSelectorRequirement { Key = kv.Key, OperatorProperty = "In", Values = [kv.Value] })
            .Append(new V1NodeSelectorRequirement { Key = spec.RackLabel, OperatorProperty = "In", Values = [rack] })
            .ToList();
        var templateSpec = new V1PodSpec
        {
            Affinity = new V1Affinity
            {
                NodeAffinity = new V1NodeAffinity
                {
                    RequiredDuringSchedulingIgnoredDuringExecution = new V1NodeSelector
                    {
                        NodeSelectorTerms = [new V1NodeSelectorTerm { MatchExpressions = nodeTerms }],
                    },
                },
            },
            Tolerations = spec.Tolerations.Count == 0 ? null : spec.Tolerations.ToList(),
            Containers = [container],
            Volumes =
            [
                .. spec.DataDirs.Select((dir, i) => new V1Volume
                {
                    Name = $"data-{i}",
                    HostPath = new V1HostPathVolumeSource { Path = dir, Type = "DirectoryOrCreate" },
                }),
                .. TlsMount.Volumes(c, Core.Security.ComponentRoles.ChunkServer),
            ],
            TerminationGracePeriodSeconds = 60,
        };
        var template = new V1PodTemplateSpec { Metadata = new V1ObjectMeta { Labels = labels }, Spec = templateSpec };
        // The template hash lets the rollout find pods still running an old template.
        template.Metadata.Annotations = new Dictionary<string, string> { [Names.TemplateHashAnnotation] = SpecHash.Of(template) };
        return new V1DaemonSet
        {
            ApiVersion = "apps/v1",
            Kind = "DaemonSet",
            Metadata = Meta.Owned(c, Names.ChunkServer(c, rack), Component),
            Spec = new V1DaemonSetSpec
            {
                Selector = new V1LabelSelector { MatchLabels = selector },
                // Pods are replaced by the operator, one at a time, only while every chunk is fully replicated.
                UpdateStrategy = new V1DaemonSetUpdateStrategy { Type = "OnDelete" },
                Template = template,
            },
        };
    }

    public static V1Service MetricsService(StorageCluster c) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Meta.Owned(c, Names.ChunkServerMetrics(c), Component),
        Spec = new V1ServiceSpec
        {
            Selector = Names.Selector(c, Component),
            Ports = [new V1ServicePort { Name = "http-metrics", Port = c.Spec.ChunkServers.HttpPort, TargetPort = c.Spec.ChunkServers.HttpPort }],
        },
    };
}
