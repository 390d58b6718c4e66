using k8s.Models;

namespace FeitianK8s.Operator.Failover;

/// <summary>What Kubernetes' Ready condition says of a node.</summary>
public enum NodeReadiness
{
    Ready,
    /// <summary>Ready condition False or Unknown.</summary>
    NotReady,
    /// <summary>No Ready condition reported at all: nothing is decided on it.</summary>
    Unreported,
}

/// <summary>A node's lease as the cluster masters' leaders judge it, merged over every StorageCluster with failover on.</summary>
public enum NodeLease
{
    /// <summary>No master knows a lease of this node (no node plugin of ours, or it keeps none).</summary>
    None,
    Live,
    Expired,
}

/// <summary>What the planner needs of a Kubernetes node.</summary>
public sealed record NodeView(string Name, NodeReadiness Readiness, bool OutOfService, bool TaintedByOperator)
{
    public static NodeView From(V1Node node)
    {
        var ready = node.Status?.Conditions?.FirstOrDefault(c => c.Type == "Ready");
        var readiness = ready?.Status switch
        {
            "True" => NodeReadiness.Ready,
            "False" or "Unknown" => NodeReadiness.NotReady,
            _ => NodeReadiness.Unreported,
        };
        var tainted = node.Spec?.Taints?.Any(NodeFailoverPlanner.IsOutOfServiceTaint) ?? false;
        var ours = node.Metadata.Annotations?.ContainsKey(NodeFailoverPlanner.TaintedAnnotation) ?? false;
        return new NodeView(node.Metadata.Name, readiness, tainted, ours);
    }
}

public enum FailoverActionKind
{
    /// <summary>Add the out-of-service taint and the annotation that says the operator added it.</summary>
    Taint,
    /// <summary>Remove the taint the operator added, and its annotation.</summary>
    Untaint,
    /// <summary>Someone else removed the operator's taint: drop the stale annotation.</summary>
    ForgetAnnotation,
}

public sealed record FailoverAction(string Node, FailoverActionKind Kind, string Reason);

/// <summary>
/// Decides which nodes are out of service (Kubernetes' non-graceful node shutdown): a node is
/// tainted only when BOTH its Feitian node lease has expired (no node plugin renewal reached the
/// master's leader for a whole lease) AND Kubernetes reports it NotReady; never a Ready node, and
/// never a node with a live lease. The taint comes off when the node is Ready again and its lease
/// was renewed, and only a taint the operator itself added (its annotation says so).
/// </summary>
public static class NodeFailoverPlanner
{
    public const string OutOfServiceTaintKey = "node.kubernetes.io/out-of-service";
    public const string OutOfServiceTaintValue = "nodeshutdown";
    public const string OutOfServiceTaintEffect = "NoExecute";
    /// <summary>Set on a node the operator tainted (value: when); without it the taint is someone else's and left alone.</summary>
    public const string TaintedAnnotation = "feitian.io/out-of-service-taint";

    public static bool IsOutOfServiceTaint(V1Taint taint) => taint.Key == OutOfServiceTaintKey && taint.Effect == OutOfServiceTaintEffect;

    /// <summary>Plans the actions; <paramref name="leases"/> null = no master answered, so nothing is decided.</summary>
    public static IReadOnlyList<FailoverAction> Plan(IEnumerable<NodeView> nodes, IReadOnlyDictionary<string, NodeLease>? leases)
    {
        if (leases is null)
        {
            return [];
        }
        var actions = new List<FailoverAction>();
        foreach (var node in nodes.OrderBy(n => n.Name, StringComparer.Ordinal))
        {
            var lease = leases.GetValueOrDefault(node.Name, NodeLease.None);
            if (!node.OutOfService)
            {
                if (node.TaintedByOperator)
                {
                    actions.Add(new FailoverAction(node.Name, FailoverActionKind.ForgetAnnotation, "the out-of-service taint the operator added was removed by someone else"));
                }
                else if (node.Readiness == NodeReadiness.NotReady && lease == NodeLease.Expired)
                {
                    actions.Add(new FailoverAction(node.Name, FailoverActionKind.Taint, "node is NotReady and its Feitian node lease expired"));
                }
                continue;
            }
            if (node.TaintedByOperator && node.Readiness == NodeReadiness.Ready && lease == NodeLease.Live)
            {
                actions.Add(new FailoverAction(node.Name, FailoverActionKind.Untaint, "node is Ready again and renewed its Feitian node lease"));
            }
        }
        return actions;
    }

    /// <summary>
    /// Merges the leases several masters report for the same node: live if any master says live
    /// (its plugin of that cluster still renews), else expired if any says expired.
    /// </summary>
    public static Dictionary<string, NodeLease> Merge(IEnumerable<IEnumerable<(string Node, string State)>> perCluster)
    {
        var merged = new Dictionary<string, NodeLease>(StringComparer.Ordinal);
        foreach (var (node, state) in perCluster.SelectMany(c => c))
        {
            var lease = state switch { "live" => NodeLease.Live, "expired" => NodeLease.Expired, _ => NodeLease.None };
            var before = merged.GetValueOrDefault(node, NodeLease.None);
            merged[node] = before == NodeLease.Live || lease == NodeLease.Live ? NodeLease.Live
                : before == NodeLease.Expired || lease == NodeLease.Expired ? NodeLease.Expired
                : NodeLease.None;
        }
        return merged;
    }
}
