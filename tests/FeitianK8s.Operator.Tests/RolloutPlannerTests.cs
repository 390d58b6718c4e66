using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Reconcile;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

public sealed class RolloutPlannerTests
{
    private static readonly MasterReport Healthy = new("m0", 0, 0, []);
    private static readonly Dictionary<string, int> TwoPerRack = new() { ["rack-a"] = 2, ["rack-b"] = 2, ["rack-c"] = 2 };

    private static (List<V1DaemonSet> Sets, List<V1Pod> Pods) Setup(int outdated, bool allReady = true)
    {
        var sets = DesiredState.ChunkServerDaemonSets(DesiredState.Build(TestClusters.Minimal(),
            new ClusterEnvironment(TestClusters.ThreeRacks(), false))).ToList();
        var pods = new List<V1Pod>();
        var i = 0;
        foreach (var ds in sets)
        {
            for (var n = 0; n < 2; n++, i++)
            {
                var labels = new Dictionary<string, string>(ds.Spec.Template.Metadata.Labels);
                var hash = i < outdated ? "old" : ds.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];
                pods.Add(new V1Pod
                {
                    Metadata = new V1ObjectMeta { Name = $"cs-{i}", Labels = labels, Annotations = new Dictionary<string, string> { [Names.TemplateHashAnnotation] = hash } },
                    Status = new V1PodStatus { Conditions = [new V1PodCondition { Type = "Ready", Status = allReady || i != 5 ? "True" : "False" }] },
                });
            }
        }
        return (sets, pods);
    }

    [Fact]
    public void Nothing_to_do_when_every_pod_runs_the_current_template()
    {
        var (sets, pods) = Setup(outdated: 0);
        Assert.Equal(RolloutAction.Done, RolloutPlanner.Next(sets, pods, Healthy, TwoPerRack).Action);
    }

    [Fact]
    public void Replaces_exactly_one_outdated_pod_while_fully_replicated()
    {
        var (sets, pods) = Setup(outdated: 3);
        var decision = RolloutPlanner.Next(sets, pods, Healthy, TwoPerRack);
        Assert.Equal((RolloutAction.Replace, "cs-0"), (decision.Action, decision.Pod));
    }

    [Fact]
    public void Waits_while_chunks_are_under_replicated_or_replicas_are_bad()
    {
        var (sets, pods) = Setup(outdated: 3);
        Assert.Equal(RolloutAction.Wait, RolloutPlanner.Next(sets, pods, Healthy with { DegradedChunks = 4 }, TwoPerRack).Action);
        Assert.Equal(RolloutAction.Wait, RolloutPlanner.Next(sets, pods, Healthy with { BadReplicas = 1 }, TwoPerRack).Action);
    }

    [Fact]
    public void A_missing_pod_counts_as_down_so_no_second_pod_is_taken()
    {
        var (sets, pods) = Setup(outdated: 3);
        pods.RemoveAt(0); // deleted, the DaemonSet has not recreated it yet
        var decision = RolloutPlanner.Next(sets, pods, Healthy, TwoPerRack);
        Assert.Equal(RolloutAction.Wait, decision.Action);
        Assert.Contains("rack-a runs 1 of 2", decision.Reason);
    }

    [Fact]
    public void Waits_when_the_master_does_not_answer()
    {
        var (sets, pods) = Setup(outdated: 1);
        Assert.Equal(RolloutAction.Wait, RolloutPlanner.Next(sets, pods, null, TwoPerRack).Action);
    }

    [Fact]
    public void Waits_while_any_chunk_server_pod_is_not_ready_so_only_one_is_ever_down()
    {
        var (sets, pods) = Setup(outdated: 3, allReady: false);
        var decision = RolloutPlanner.Next(sets, pods, Healthy, TwoPerRack);
        Assert.Equal(RolloutAction.Wait, decision.Action);
        Assert.Contains("cs-5", decision.Reason);
        pods[0].Metadata.DeletionTimestamp = DateTime.UtcNow;
        pods[5].Status.Conditions[0].Status = "True";
        Assert.Equal(RolloutAction.Wait, RolloutPlanner.Next(sets, pods, Healthy, TwoPerRack).Action);
    }
}
