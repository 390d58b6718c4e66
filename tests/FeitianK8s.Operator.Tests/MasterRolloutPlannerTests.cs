using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Proto.Master;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

/// <summary>The master rolling upgrade: one member at a time, followers first, only while the Raft group is whole and caught up.</summary>
public sealed class MasterRolloutPlannerTests
{
    private static V1StatefulSet StatefulSet(int replicas = 3)
    {
        var cluster = TestClusters.Minimal();
        cluster.Spec.Masters.Replicas = replicas;
        return MasterBuilder.StatefulSet(cluster);
    }

    private static List<V1Pod> Pods(V1StatefulSet set, params string[] hashes) =>
        hashes.Select((hash, i) => new V1Pod
        {
            Metadata = new V1ObjectMeta
            {
                Name = $"{set.Metadata.Name}-{i}",
                Annotations = new Dictionary<string, string>
                {
                    [Names.TemplateHashAnnotation] = hash == "new" ? set.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation] : hash,
                },
            },
            Status = new V1PodStatus { Conditions = [new V1PodCondition { Type = "Ready", Status = "True" }] },
        }).ToList();

    private static MasterStatus Member(string role, ulong commit = 100, ulong applied = 100, ulong term = 4) =>
        new() { Role = role, CommitIndex = commit, AppliedIndex = applied, Term = term };

    private static readonly MasterStatus?[] Healthy = [Member("follower"), Member("leader"), Member("follower")];

    [Fact]
    public void The_statefulset_is_updated_only_on_delete_with_a_template_hash_and_a_majority_budget()
    {
        foreach (var replicas in new[] { 1, 3, 5 })
        {
            var cluster = TestClusters.Minimal();
            cluster.Spec.Masters.Replicas = replicas;
            var set = MasterBuilder.StatefulSet(cluster);
            Assert.Equal("OnDelete", set.Spec.UpdateStrategy.Type);
            Assert.False(string.IsNullOrEmpty(set.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation]));
            var args = set.Spec.Template.Spec.Containers[0].Args;
            var peers = args[args.IndexOf("--peers") + 1].Split(',');
            Assert.Equal(replicas, peers.Length);
            Assert.All(peers, (p, i) => Assert.Equal($"prod-master-{i}.prod-master.storage.svc:{cluster.Spec.Masters.RaftPort}", p));
            Assert.Equal((replicas / 2 + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), MasterBuilder.DisruptionBudget(cluster).Spec.MinAvailable.Value);
        }
        Assert.NotEqual(StatefulSet().Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation],
            MasterBuilder.StatefulSet(Changed()).Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation]);

        static Resources.StorageCluster Changed()
        {
            var c = TestClusters.Minimal();
            c.Spec.Images.Master = "feitian/master:next";
            return c;
        }
    }

    [Fact]
    public void Followers_go_first_and_the_leader_last()
    {
        var set = StatefulSet();
        var first = MasterRolloutPlanner.Next(set, Pods(set, "old", "old", "old"), Healthy);
        Assert.Equal((RolloutAction.Replace, "prod-master-0"), (first.Action, first.Pod));
        var second = MasterRolloutPlanner.Next(set, Pods(set, "new", "old", "old"), Healthy);
        Assert.Equal("prod-master-2", second.Pod);
        var last = MasterRolloutPlanner.Next(set, Pods(set, "new", "old", "new"), Healthy);
        Assert.Equal((RolloutAction.Replace, "prod-master-1"), (last.Action, last.Pod));
        Assert.Contains("leader", last.Reason);
        Assert.Equal(RolloutAction.Done, MasterRolloutPlanner.Next(set, Pods(set, "new", "new", "new"), []).Action);
        // Pods still being created (none outdated) are no upgrade.
        Assert.Equal(RolloutAction.Done, MasterRolloutPlanner.Next(set, [], []).Action);
        Assert.Equal(RolloutAction.Done, MasterRolloutPlanner.Next(set, Pods(set, "new"), []).Action);
    }

    [Fact]
    public void Nothing_is_deleted_unless_every_pod_is_ready_and_every_member_answers_and_caught_up()
    {
        var set = StatefulSet();
        var pods = Pods(set, "old", "old", "old");
        Assert.True(MasterRolloutPlanner.NeedsMembers(set, pods));

        var missing = MasterRolloutPlanner.Next(set, pods.Take(2).ToList(), Healthy);
        Assert.Equal(RolloutAction.Wait, missing.Action);
        Assert.Contains("prod-master-2", missing.Reason);

        var notReady = Pods(set, "old", "old", "old");
        notReady[1].Status.Conditions[0].Status = "False";
        Assert.Equal(RolloutAction.Wait, MasterRolloutPlanner.Next(set, notReady, Healthy).Action);
        Assert.False(MasterRolloutPlanner.NeedsMembers(set, notReady));

        Assert.Equal(RolloutAction.Wait, MasterRolloutPlanner.Next(set, pods, [Member("follower"), Member("leader"), null]).Action);
        Assert.Equal(RolloutAction.Wait, MasterRolloutPlanner.Next(set, pods, [Member("follower"), Member("candidate"), Member("follower")]).Action);
        var behind = MasterRolloutPlanner.Next(set, pods, [Member("follower", applied: 100 - MasterRolloutPlanner.MaxLag - 1), Member("leader"), Member("follower")]);
        Assert.Equal(RolloutAction.Wait, behind.Action);
        Assert.Contains("behind", behind.Reason);
        Assert.Equal(RolloutAction.Wait, MasterRolloutPlanner.Next(set, pods, [Member("follower", term: 3), Member("leader"), Member("follower")]).Action);
        Assert.Equal(RolloutAction.Replace,
            MasterRolloutPlanner.Next(set, pods, [Member("follower", applied: 100 - MasterRolloutPlanner.MaxLag), Member("leader"), Member("follower")]).Action);
    }

    [Fact]
    public void A_single_master_is_replaced_when_it_answers()
    {
        var set = StatefulSet(replicas: 1);
        var pods = Pods(set, "old");
        Assert.Equal(RolloutAction.Wait, MasterRolloutPlanner.Next(set, pods, [null]).Action);
        Assert.Equal("prod-master-0", MasterRolloutPlanner.Next(set, pods, [Member("leader")]).Pod);
    }
}
