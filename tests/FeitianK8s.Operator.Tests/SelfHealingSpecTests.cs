using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Tests;

/// <summary>spec.rebuild's self-healing settings become master and chunk-server flags; status changes become Events.</summary>
public sealed class SelfHealingSpecTests
{
    private static string? ArgAfter(IList<string> args, string flag) => args.IndexOf(flag) is var i and >= 0 ? args[i + 1] : null;

    [Fact]
    public void Dead_after_max_rebuilds_and_scrub_bandwidth_are_passed_to_the_servers()
    {
        var c = TestClusters.Minimal();
        var master = MasterBuilder.StatefulSet(c).Spec.Template.Spec.Containers[0].Args;
        Assert.Equal("60", ArgAfter(master, "--dead-after"));
        Assert.Equal("12", ArgAfter(master, "--max-rebuilds"));
        Assert.Equal("4194304", ArgAfter(RebuildFlags.Args(c.Spec.Rebuild).ToList(), "--scrub-bandwidth"));

        c.Spec.Rebuild.DeadAfterSeconds = 30;
        c.Spec.Rebuild.MaxRebuilds = 4;
        c.Spec.Rebuild.ScrubBandwidthPerNode = "0";
        master = MasterBuilder.StatefulSet(c).Spec.Template.Spec.Containers[0].Args;
        Assert.Equal("30", ArgAfter(master, "--dead-after"));
        Assert.Equal("4", ArgAfter(master, "--max-rebuilds"));
        Assert.Equal("0", ArgAfter(RebuildFlags.Args(c.Spec.Rebuild).ToList(), "--scrub-bandwidth"));
    }

    [Fact]
    public void Invalid_self_healing_settings_are_refused_with_the_field_named()
    {
        var errors = RebuildFlags.Errors(new RebuildSpec { DeadAfterSeconds = 0, MaxRebuilds = 0, ScrubBandwidthPerNode = "fast" });
        Assert.Contains(errors, e => e.Contains("spec.rebuild.deadAfterSeconds"));
        Assert.Contains(errors, e => e.Contains("spec.rebuild.maxRebuilds"));
        Assert.Contains(errors, e => e.Contains("spec.rebuild.scrubBandwidthPerNode"));
        Assert.Empty(RebuildFlags.Errors(new RebuildSpec()));
    }

    [Fact]
    public void A_newly_dead_server_and_restored_redundancy_become_events()
    {
        var healthy = new StorageClusterStatus { DegradedChunks = 0, UnderReplicatedChunks = 0, DeadChunkServers = [] };
        var dead = new StorageClusterStatus { DegradedChunks = 0, UnderReplicatedChunks = 7, DeadChunkServers = ["cs-a"] };
        var restored = new StorageClusterStatus { DegradedChunks = 0, UnderReplicatedChunks = 0, DeadChunkServers = ["cs-a"] };

        var first = RedundancyEvents.Between(healthy, dead);
        var e = Assert.Single(first);
        Assert.Equal(("Warning", "ChunkServerDead"), (e.Type, e.Reason));
        Assert.Contains("cs-a", e.Message);
        Assert.Contains("7 under-replicated", e.Message);
        Assert.Empty(RedundancyEvents.Between(dead, dead));
        Assert.Equal("RedundancyRestored", Assert.Single(RedundancyEvents.Between(dead, restored)).Reason);
        Assert.Empty(RedundancyEvents.Between(restored, restored));
        Assert.Empty(RedundancyEvents.Between(dead, new StorageClusterStatus()));
    }
}
