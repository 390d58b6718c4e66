using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

/// <summary>The volume-host DaemonSet as rendered, and its drain-based upgrade planner.</summary>
public sealed class VolumeHostRolloutPlannerTests
{
    private static readonly IReadOnlyList<DesiredObject> Desired = DesiredState.Build(TestClusters.Minimal(), new ClusterEnvironment(TestClusters.ThreeRacks(), false));
    private static readonly V1DaemonSet VolumeHosts = DesiredState.VolumeHostDaemonSet(Desired);
    private static readonly string Current = VolumeHosts.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];

    private static V1Pod Pod(string name, string node, string hash, bool ready = true) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Annotations = new Dictionary<string, string> { [Names.TemplateHashAnnotation] = hash } },
        Spec = new V1PodSpec { NodeName = node },
        Status = new V1PodStatus { Conditions = [new V1PodCondition { Type = "Ready", Status = ready ? "True" : "False" }] },
    };

    private static V1VolumeAttachment Attachment(string node, string attacher = Names.CsiDriverName) =>
        new() { Metadata = new V1ObjectMeta { Name = $"csi-{node}-{attacher}" }, Spec = new V1VolumeAttachmentSpec { Attacher = attacher, NodeName = node } };

    [Fact]
    public void Volume_host_daemonset_is_never_rolled_by_kubernetes_and_shares_the_agent_socket_and_state_dir_with_the_node_plugin()
    {
        Assert.Equal("prod-volume-host", VolumeHosts.Metadata.Name);
        Assert.Equal("OnDelete", VolumeHosts.Spec.UpdateStrategy.Type);
        var agent = VolumeHosts.Spec.Template.Spec.Containers.Single();
        Assert.True(agent.SecurityContext.Privileged);
        Assert.Null(agent.LivenessProbe);
        Assert.Equal(["--mode", "volume-host", "--agent-socket", VolumeHostBuilder.AgentSocket], agent.Args.Take(4));
        Assert.Equal("Bidirectional", agent.VolumeMounts.Single(m => m.MountPath == CsiBuilder.NodeStateDir).MountPropagation);
        Assert.Equal("CharDevice", VolumeHosts.Spec.Template.Spec.Volumes.Single(v => v.Name == "fuse").HostPath.Type);

        var plugin = Desired.Select(d => d.Object).OfType<V1DaemonSet>().Single(d => d.Metadata.Name == "prod-csi-node");
        var driver = plugin.Spec.Template.Spec.Containers.Single(c => c.Name == "csi-driver");
        Assert.Equal(VolumeHostBuilder.AgentSocket, driver.Args[driver.Args.IndexOf("--volume-host-agent") + 1]);
        Assert.Equal("Bidirectional", driver.VolumeMounts.Single(m => m.MountPath == CsiBuilder.NodeStateDir).MountPropagation);
        // Both pods see the same host directories at the same paths.
        string HostPathOf(V1DaemonSet ds, V1Container c, string mountPath) =>
            ds.Spec.Template.Spec.Volumes.Single(v => v.Name == c.VolumeMounts.Single(m => m.MountPath == mountPath).Name).HostPath.Path;
        foreach (var dir in new[] { VolumeHostBuilder.AgentDir, CsiBuilder.NodeStateDir })
        {
            Assert.Equal(dir, HostPathOf(VolumeHosts, agent, dir));
            Assert.Equal(dir, HostPathOf(plugin, driver, dir));
        }
    }

    [Fact]
    public void Done_when_every_volume_host_runs_the_current_template()
    {
        var decision = VolumeHostRolloutPlanner.Next(VolumeHosts, null, [Pod("vh-1", "node-a1", Current), Pod("vh-2", "node-b1", Current)], [Attachment("node-a1")]);
        Assert.Equal(RolloutAction.Done, decision.Action);
    }

    [Fact]
    public void Replaces_an_outdated_volume_host_only_on_a_node_without_volumes_of_this_driver()
    {
        V1Pod[] pods = [Pod("vh-1", "node-a1", "old"), Pod("vh-2", "node-b1", "old")];
        // Another driver's attachment does not hold node-b1.
        var decision = VolumeHostRolloutPlanner.Next(VolumeHosts, null, pods, [Attachment("node-a1"), Attachment("node-b1", "other.csi.example.com")]);
        Assert.Equal((RolloutAction.Replace, "vh-2"), (decision.Action, decision.Pod));

        var busy = VolumeHostRolloutPlanner.Next(VolumeHosts, null, pods, [Attachment("node-a1"), Attachment("node-b1"), Attachment("node-b1")]);
        Assert.Equal(RolloutAction.Wait, busy.Action);
        Assert.Contains("node-b1 (2 volumes)", busy.Reason, StringComparison.Ordinal);
        Assert.Contains("kubectl drain", busy.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void One_node_at_a_time_nothing_is_replaced_while_a_volume_host_is_missing_not_ready_or_terminating()
    {
        var observed = new V1DaemonSet { Status = new V1DaemonSetStatus { DesiredNumberScheduled = 3 } };
        V1Pod[] two = [Pod("vh-1", "node-a1", "old"), Pod("vh-2", "node-b1", "old")];
        Assert.Equal(RolloutAction.Wait, VolumeHostRolloutPlanner.Next(VolumeHosts, observed, two, []).Action);
        Assert.Equal(RolloutAction.Wait, VolumeHostRolloutPlanner.Next(VolumeHosts, null, [.. two, Pod("vh-3", "node-c1", Current, ready: false)], []).Action);
        var terminating = Pod("vh-3", "node-c1", "old");
        terminating.Metadata.DeletionTimestamp = DateTime.UtcNow;
        Assert.Equal(RolloutAction.Wait, VolumeHostRolloutPlanner.Next(VolumeHosts, null, [.. two, terminating], []).Action);
    }
}
