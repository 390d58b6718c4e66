using FeitianK8s.Operator.Desired;
using FeitianK8s.Proto.Master;
using k8s.Models;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>
/// Safe rolling upgrade of the Raft masters (StatefulSet with updateStrategy OnDelete): one pod
/// at a time, and only while the group is whole and healthy, so a quorum survives the upgrade.
/// A pod is deleted only when
/// <list type="bullet">
/// <item>every pod of the StatefulSet exists, is not being deleted and is ready;</item>
/// <item>every member answers GetMasterState, exactly one is leader, and every member has applied
/// the leader's commit index up to <see cref="MaxLag"/> entries (a member that just restarted has caught up);</item>
/// </list>
/// Outdated followers go first (by ordinal), the leader last: the group changes leader once.
/// </summary>
public static class MasterRolloutPlanner
{
    /// <summary>Log entries a member may be behind the leader and still count as caught up.</summary>
    public const ulong MaxLag = 64;

    /// <summary>True when every pod is ready and some run an old template: only then does <see cref="Next"/> need the members' states.</summary>
    public static bool NeedsMembers(V1StatefulSet desired, IReadOnlyList<V1Pod> pods)
    {
        var decision = Next(desired, pods, []);
        return decision.Action == RolloutAction.Wait && decision.Reason.EndsWith(" masters known", StringComparison.Ordinal);
    }

    /// <param name="members">GetMasterState of the master of pod ordinal i at index i; null when it does not answer.</param>
    public static RolloutDecision Next(V1StatefulSet desired, IReadOnlyList<V1Pod> pods, IReadOnlyList<MasterStatus?> members)
    {
        var name = desired.Metadata.Name;
        var replicas = desired.Spec.Replicas ?? 1;
        var want = desired.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];
        var byName = pods.ToDictionary(p => p.Metadata.Name, StringComparer.Ordinal);
        var outdated = Enumerable.Range(0, replicas)
            .Where(i => byName.TryGetValue($"{name}-{i}", out var pod) && Names.Value(pod.Metadata.Annotations, Names.TemplateHashAnnotation) != want)
            .ToList();
        if (outdated.Count == 0)
        {
            // Missing or starting pods without an outdated one are the StatefulSet's business, not an upgrade.
            return new RolloutDecision(RolloutAction.Done, "no master runs an old template");
        }
        for (var i = 0; i < replicas; i++)
        {
            if (!byName.TryGetValue($"{name}-{i}", out var pod))
            {
                return new RolloutDecision(RolloutAction.Wait, $"master pod {name}-{i} does not exist");
            }
            if (pod.Metadata.DeletionTimestamp is not null || !RolloutPlanner.IsReady(pod))
            {
                return new RolloutDecision(RolloutAction.Wait, $"master pod {pod.Metadata.Name} is not ready");
            }
        }
        if (members.Count < replicas)
        {
            return new RolloutDecision(RolloutAction.Wait, $"{members.Count} of {replicas} masters known");
        }
        for (var i = 0; i < replicas; i++)
        {
            if (members[i] is null)
            {
                return new RolloutDecision(RolloutAction.Wait, $"master {name}-{i} does not answer");
            }
        }
        var leaders = Enumerable.Range(0, replicas).Where(i => members[i]!.Role == "leader").ToList();
        if (leaders.Count != 1)
        {
            return new RolloutDecision(RolloutAction.Wait, leaders.Count == 0 ? "no master is leader" : $"{leaders.Count} masters claim to lead");
        }
        var leader = members[leaders[0]]!;
        for (var i = 0; i < replicas; i++)
        {
            var member = members[i]!;
            var behind = leader.CommitIndex > member.AppliedIndex ? leader.CommitIndex - member.AppliedIndex : 0;
            if (behind > MaxLag || member.Term != leader.Term)
            {
                return new RolloutDecision(RolloutAction.Wait,
                    $"master {name}-{i} is {behind} entries behind the leader (term {member.Term}, leader's {leader.Term})");
            }
        }
        var next = outdated.OrderBy(i => i == leaders[0]).ThenBy(i => i).First();
        var role = next == leaders[0] ? "the leader, last" : "a follower";
        return new RolloutDecision(RolloutAction.Replace, $"{outdated.Count} masters outdated; {name}-{next} is {role}", $"{name}-{next}");
    }
}
