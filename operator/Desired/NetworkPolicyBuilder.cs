using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>Where the operator's own pods run: its namespace and the labels of its pods (the chart's).</summary>
public sealed record OperatorPeer(string Namespace, IReadOnlyDictionary<string, string> PodLabels)
{
    public static readonly IReadOnlyDictionary<string, string> ChartPodLabels = new Dictionary<string, string>
    {
        ["app.kubernetes.io/name"] = "feitian",
        [Names.ComponentLabel] = "operator",
    };
}

/// <summary>
/// Ingress rules for the masters and the chunk servers: their gRPC port (and the masters' Raft
/// port) admit only this cluster's own pods (masters, chunk servers, CSI controller and node
/// plugins with their volume hosts, all labelled feitian.io/cluster=NAME by the operator) and the
/// operator's pods; the HTTP port (web console, /metrics, /healthz) stays open to anyone, for
/// Prometheus and the kubelet. Egress is not restricted.
/// </summary>
public static class NetworkPolicyBuilder
{
    public static V1NetworkPolicy Masters(StorageCluster c, OperatorPeer op) =>
        Policy(c, Names.Master(c), MasterBuilder.Component, op, [c.Spec.Masters.Port, c.Spec.Masters.RaftPort], c.Spec.Masters.HttpPort);

    public static V1NetworkPolicy ChunkServers(StorageCluster c, OperatorPeer op) =>
        Policy(c, Names.ChunkServerPolicy(c), ChunkServerBuilder.Component, op,
            [c.Spec.ChunkServers.Port], c.Spec.ChunkServers.HttpPort);

    /// <summary>The pods of this cluster: every pod the operator made for it, whatever the component.</summary>
    public static V1NetworkPolicyPeer ClusterPods(StorageCluster c) => new()
    {
        PodSelector = new V1LabelSelector
        {
            MatchLabels = new Dictionary<string, string> { [Names.ClusterLabel] = c.Metadata.Name, [Names.ManagedByLabel] = Names.ManagedByValue },
        },
    };

    public static V1NetworkPolicyPeer OperatorPods(OperatorPeer op) => new()
    {
        NamespaceSelector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["kubernetes.io/metadata.name"] = op.Namespace } },
        PodSelector = new V1LabelSelector { MatchLabels = new Dictionary<string, string>(op.PodLabels) },
    };

    private static V1NetworkPolicy Policy(StorageCluster c, string name, string component, OperatorPeer op, IReadOnlyList<int> privatePorts, int httpPort) => new()
    {
        ApiVersion = "networking.k8s.io/v1",
        Kind = "NetworkPolicy",
        Metadata = Meta.Owned(c, name, component),
        Spec = new V1NetworkPolicySpec
        {
            PodSelector = new V1LabelSelector { MatchLabels = Names.Selector(c, component) },
            PolicyTypes = ["Ingress"],
            Ingress =
            [
                new V1NetworkPolicyIngressRule
                {
                    FromProperty = [ClusterPods(c), OperatorPods(op)],
                    Ports = privatePorts.Select(p => new V1NetworkPolicyPort { Protocol = "TCP", Port = p }).ToList(),
                },
                // No "from": anyone (Prometheus, the kubelet's probes, a browser on the console).
                new V1NetworkPolicyIngressRule { Ports = [new V1NetworkPolicyPort { Protocol = "TCP", Port = httpPort }] },
            ],
        },
    };
}
