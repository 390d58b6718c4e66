using FeitianK8s.Operator.Desired;
using k8s.Models;

namespace FeitianK8s.Operator.Reconcile;

public enum RolloutAction
{
    /// <summary>Every pod runs the current template.</summary>
    Done,
    /// <summary>Outdated pods remain but it is not safe to take one down now.</summary>
    Wait,
    /// <summary>Delete <see cref="RolloutDecision.Pod"/> so its DaemonSet recreates it from the new template.</summary>
    Replace,
}

public sealed record RolloutDecision(RolloutAction Action, string Reason, string? Pod = null);

/// <summary>
/// Safe rolling upgrade of chunk servers: at most one pod down at a time, and a pod is taken down
/// only while every chunk is fully replicated, so the upgrade never removes the last good replica.
/// A pod that is missing (deleted, not yet recreated) counts as down: the pod list alone would
/// hide it.
/// </summary>
public static class RolloutPlanner
{
    /// <param name="expectedPerRack">Chunk-server pods each rack should run (its storage nodes), by rack label value as in <see cref="Names.RackLabel"/>.</param>
    public static RolloutDecision Next(IReadOnlyList<V1DaemonSet> desired, IReadOnlyList<V1Pod> pods, Health.MasterReport? master,
        IReadOnlyDictionary<string, int> expectedPerRack)
    {
        foreach (var (rack, expected) in expectedPerRack.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var present = pods.Count(p => Names.Value(p.Metadata.Labels, Names.RackLabel) == rack && p.Metadata.DeletionTimestamp is null);
            if (present < expected)
            {
                return new RolloutDecision(RolloutAction.Wait, $"rack {rack} runs {present} of {expected} chunk-server pods");
            }
        }
        var wanted = desired.ToDictionary(
            d => d.Spec.Template.Metadata.Labels[Names.RackLabel],
            d => d.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation]);
        var outdated = new List<V1Pod>();
        foreach (var pod in pods.OrderBy(p => p.Metadata.Name, StringComparer.Ordinal))
        {
            if (pod.Metadata.DeletionTimestamp is not null || !IsReady(pod))
            {
                return new RolloutDecision(RolloutAction.Wait, $"pod {pod.Metadata.Name} is not ready");
            }
            var rack = Names.Value(pod.Metadata.Labels, Names.RackLabel);
            var hash = Names.Value(pod.Metadata.Annotations, Names.TemplateHashAnnotation);
            if (rack is not null && wanted.TryGetValue(rack, out var want) && want != hash)
            {
                outdated.Add(pod);
            }
        }
        if (outdated.Count == 0)
        {
            return new RolloutDecision(RolloutAction.Done, "all chunk servers run the current template");
        }
        if (master is null)
        {
            return new RolloutDecision(RolloutAction.Wait, "the master does not answer, replication state unknown");
        }
        if (!master.FullyReplicated)
        {
            return new RolloutDecision(RolloutAction.Wait,
                $"{master.DegradedChunks} under-replicated chunks and {master.BadReplicas} bad replicas");
        }
        return new RolloutDecision(RolloutAction.Replace, $"{outdated.Count} chunk servers outdated", outdated[0].Metadata.Name);
    }

    public static bool IsReady(V1Pod pod) =>
        pod.Status?.Conditions?.Any(c => c.Type == "Ready" && c.Status == "True") == true;
}
