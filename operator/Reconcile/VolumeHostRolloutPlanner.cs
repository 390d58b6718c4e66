using FeitianK8s.Operator.Desired;
using k8s.Models;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>
/// Upgrade of the volume hosts by draining: a volume-host pod carries the engines of every volume
/// staged on its node and takes them down when it goes, so an outdated pod is deleted (and its
/// OnDelete DaemonSet recreates it from the new template) only on a node that holds no volume of
/// this driver: no VolumeAttachment names the node. Kubernetes deletes a VolumeAttachment only
/// after the kubelet unstaged the volume, so none left means no engine runs there. `kubectl drain`
/// moves a node's pods, and with them its volumes, away; the node's volume host is then upgraded.
/// One pod at a time: nothing is replaced while another volume-host pod is missing, terminating
/// or not ready.
/// </summary>
public static class VolumeHostRolloutPlanner
{
    /// <param name="desired">The desired volume-host DaemonSet (its template carries the template hash).</param>
    /// <param name="observed">The DaemonSet as the API server has it (its status says how many pods it should run); null when not created yet.</param>
    /// <param name="pods">The volume-host pods of this cluster.</param>
    /// <param name="attachments">Every VolumeAttachment of the cluster (any driver: filtered here).</param>
    public static RolloutDecision Next(V1DaemonSet desired, V1DaemonSet? observed, IReadOnlyList<V1Pod> pods, IReadOnlyList<V1VolumeAttachment> attachments)
    {
        var want = desired.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];
        var scheduled = observed?.Status?.DesiredNumberScheduled ?? 0;
        var present = pods.Count(p => p.Metadata.DeletionTimestamp is null);
        if (present < scheduled)
        {
            return new RolloutDecision(RolloutAction.Wait, $"{present} of {scheduled} volume-host pods exist");
        }
        var outdated = new List<V1Pod>();
        foreach (var pod in pods.OrderBy(p => p.Metadata.Name, StringComparer.Ordinal))
        {
            var current = Names.Value(pod.Metadata.Annotations, Names.TemplateHashAnnotation) == want;
            if (pod.Metadata.DeletionTimestamp is not null || !RolloutPlanner.IsReady(pod))
            {
                return new RolloutDecision(RolloutAction.Wait, $"volume-host pod {pod.Metadata.Name} is not ready");
            }
            if (!current)
            {
                outdated.Add(pod);
            }
        }
        if (outdated.Count == 0)
        {
            return new RolloutDecision(RolloutAction.Done, "all volume hosts run the current template");
        }
        var busy = attachments
            .Where(a => a.Spec?.Attacher == Names.CsiDriverName && a.Spec.NodeName is not null)
            .GroupBy(a => a.Spec.NodeName)
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var idle = outdated.FirstOrDefault(p => p.Spec?.NodeName is { } node && !busy.ContainsKey(node));
        if (idle is not null)
        {
            return new RolloutDecision(RolloutAction.Replace,
                $"{outdated.Count} volume hosts outdated; node {idle.Spec!.NodeName} holds no volume", idle.Metadata.Name);
        }
        var waiting = outdated.Select(p => p.Spec?.NodeName ?? "(unscheduled)")
            .Select(n => busy.TryGetValue(n, out var count) ? $"{n} ({count} volumes)" : n);
        return new RolloutDecision(RolloutAction.Wait,
            $"{outdated.Count} volume hosts outdated on nodes still holding volumes: {string.Join(", ", waiting)}; drain a node (kubectl drain) to upgrade its volume host");
    }
}
