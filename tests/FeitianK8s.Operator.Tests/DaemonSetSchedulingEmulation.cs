using k8s.Models;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// EMULATION of which nodes the DaemonSet controller runs a pod on (no scheduler or kubelet runs
/// here), after its predicates (pkg/controller/daemon NodeShouldRunDaemonPod): the pod template's
/// nodeSelector, its required node affinity (In, NotIn, Exists, DoesNotExist; terms ORed,
/// expressions ANDed), and the node's NoSchedule/NoExecute taints against the pod's tolerations.
/// Unschedulable nodes (cordoned) still get daemon pods: the controller tolerates that taint itself.
/// </summary>
public static class DaemonSetSchedulingEmulation
{
    public static bool RunsOn(V1DaemonSet ds, V1Node node)
    {
        var pod = ds.Spec.Template.Spec;
        var labels = node.Metadata.Labels ?? new Dictionary<string, string>();
        if (pod.NodeSelector is { } selector && !selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value))
        {
            return false;
        }
        if (pod.Affinity?.NodeAffinity?.RequiredDuringSchedulingIgnoredDuringExecution is { } required
            && !required.NodeSelectorTerms.Any(term => (term.MatchExpressions ?? []).All(e => Matches(e, labels))))
        {
            return false;
        }
        var taints = (node.Spec?.Taints ?? []).Where(t => t.Effect is "NoSchedule" or "NoExecute");
        return taints.All(t => (pod.Tolerations ?? []).Any(tol => Tolerates(tol, t)));
    }

    private static bool Matches(V1NodeSelectorRequirement e, IDictionary<string, string> labels) => e.OperatorProperty switch
    {
        "In" => labels.TryGetValue(e.Key, out var v) && e.Values.Contains(v),
        "NotIn" => !labels.TryGetValue(e.Key, out var v) || !e.Values.Contains(v),
        "Exists" => labels.ContainsKey(e.Key),
        "DoesNotExist" => !labels.ContainsKey(e.Key),
        _ => throw new InvalidOperationException($"operator {e.OperatorProperty} is not emulated"),
    };

    private static bool Tolerates(V1Toleration tol, V1Taint taint) =>
        (string.IsNullOrEmpty(tol.Effect) || tol.Effect == taint.Effect)
        && (tol.OperatorProperty == "Exists"
            ? string.IsNullOrEmpty(tol.Key) || tol.Key == taint.Key
            : tol.Key == taint.Key && (tol.Value ?? "") == (taint.Value ?? ""));
}
