using FeitianK8s.Operator.Failover;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

/// <summary>The out-of-service decision (<see cref="NodeFailoverPlanner"/>), as a plain function.</summary>
public sealed class NodeFailoverPlannerTests
{
    private static readonly Dictionary<string, NodeLease> Leases = new()
    {
        ["expired"] = NodeLease.Expired,
        ["live"] = NodeLease.Live,
    };

    private static IReadOnlyList<FailoverAction> Plan(NodeView node, NodeLease lease) =>
        NodeFailoverPlanner.Plan([node], new Dictionary<string, NodeLease> { [node.Name] = lease });

    [Fact]
    public void Only_a_NotReady_node_with_an_expired_lease_is_tainted()
    {
        var action = Assert.Single(Plan(new NodeView("n", NodeReadiness.NotReady, false, false), NodeLease.Expired));
        Assert.Equal(FailoverActionKind.Taint, action.Kind);
        Assert.Equal("n", action.Node);

        Assert.Empty(Plan(new NodeView("n", NodeReadiness.Ready, false, false), NodeLease.Expired));
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.Unreported, false, false), NodeLease.Expired));
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.NotReady, false, false), NodeLease.Live));
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.NotReady, false, false), NodeLease.None));
        // Not a node the masters know: none of ours.
        Assert.Empty(NodeFailoverPlanner.Plan([new NodeView("stranger", NodeReadiness.NotReady, false, false)], Leases));
        // No master answered: nothing is decided.
        Assert.Empty(NodeFailoverPlanner.Plan([new NodeView("expired", NodeReadiness.NotReady, false, false)], null));
        // Already out of service (by anyone): nothing to add.
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.NotReady, true, false), NodeLease.Expired));
    }

    [Fact]
    public void The_operators_own_taint_comes_off_only_when_the_node_is_Ready_and_its_lease_live()
    {
        var action = Assert.Single(Plan(new NodeView("n", NodeReadiness.Ready, true, true), NodeLease.Live));
        Assert.Equal(FailoverActionKind.Untaint, action.Kind);

        Assert.Empty(Plan(new NodeView("n", NodeReadiness.Ready, true, true), NodeLease.Expired));
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.NotReady, true, true), NodeLease.Live));
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.Unreported, true, true), NodeLease.Live));
        // Someone else's taint is never removed.
        Assert.Empty(Plan(new NodeView("n", NodeReadiness.Ready, true, false), NodeLease.Live));
        // Our taint removed by someone else: only the annotation goes.
        Assert.Equal(FailoverActionKind.ForgetAnnotation, Assert.Single(Plan(new NodeView("n", NodeReadiness.NotReady, false, true), NodeLease.Expired)).Kind);
    }

    [Fact]
    public void Leases_of_several_clusters_merge_live_over_expired_over_none()
    {
        var merged = NodeFailoverPlanner.Merge([
            [("a", "expired"), ("b", "expired"), ("c", "none"), ("d", "live")],
            [("a", "live"), ("b", "none"), ("c", "none")],
        ]);
        Assert.Equal(NodeLease.Live, merged["a"]);
        Assert.Equal(NodeLease.Expired, merged["b"]);
        Assert.Equal(NodeLease.None, merged["c"]);
        Assert.Equal(NodeLease.Live, merged["d"]);
    }

    [Fact]
    public void A_node_view_reads_the_Ready_condition_the_taint_and_the_annotation()
    {
        V1Node Node(string? ready, bool taint, bool annotation) => new()
        {
            Metadata = new V1ObjectMeta
            {
                Name = "n",
                Annotations = annotation ? new Dictionary<string, string> { [NodeFailoverPlanner.TaintedAnnotation] = "t" } : null,
            },
            Spec = new V1NodeSpec
            {
                Taints = taint
                    ? [new V1Taint { Key = NodeFailoverPlanner.OutOfServiceTaintKey, Value = "nodeshutdown", Effect = "NoExecute" }]
                    : [new V1Taint { Key = "node.kubernetes.io/unreachable", Effect = "NoExecute" }],
            },
            Status = ready is null ? null : new V1NodeStatus { Conditions = [new V1NodeCondition { Type = "Ready", Status = ready }] },
        };
        Assert.Equal(new NodeView("n", NodeReadiness.Ready, false, false), NodeView.From(Node("True", false, false)));
        Assert.Equal(new NodeView("n", NodeReadiness.NotReady, true, true), NodeView.From(Node("False", true, true)));
        Assert.Equal(NodeReadiness.NotReady, NodeView.From(Node("Unknown", false, false)).Readiness);
        Assert.Equal(NodeReadiness.Unreported, NodeView.From(Node(null, false, false)).Readiness);
    }
}
