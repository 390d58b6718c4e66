using FeitianK8s.Master.Placement;

namespace FeitianK8s.Master.Tests;

public sealed class PlacementPolicyTests
{
    private const ulong Capacity = 1UL << 40;

    private static List<PlacementCandidate> Servers(int count, int racks) =>
        Enumerable.Range(0, count).Select(i => new PlacementCandidate($"cs-{i}", $"node-{i}", $"rack-{i % racks}", 0, Capacity, 0)).ToList();

    /// <summary>Runs many allocations, feeding each choice back as a held replica like the state does.</summary>
    private static Dictionary<string, int> Allocate(List<PlacementCandidate> servers, int rounds, Action<PlacementResult> check)
    {
        var held = servers.ToDictionary(s => s.Id, _ => 0);
        for (var i = 0; i < rounds; i++)
        {
            var current = servers.Select(s => s with { Replicas = held[s.Id] }).ToList();
            var result = PlacementPolicy.Choose(current, new PlacementRequest(3))!;
            check(result);
            foreach (var chosen in result.Chosen)
            {
                held[chosen.Id]++;
            }
        }
        return held;
    }

    [Fact]
    public void SixServersOnThreeRacksAlwaysGetThreeRacksAndNodesAndStayBalanced()
    {
        var held = Allocate(Servers(6, 3), 600, result =>
        {
            Assert.Equal(3, result.Chosen.Count);
            Assert.Equal(3, result.Chosen.Select(c => c.Rack).Distinct().Count());
            Assert.Equal(3, result.Chosen.Select(c => c.Node).Distinct().Count());
            Assert.False(result.Degraded);
        });
        Assert.All(held.Values, count => Assert.Equal(300, count));
    }

    [Fact]
    public void LeastUsedServersComeFirst()
    {
        var servers = Servers(6, 3);
        servers[0] = servers[0] with { UsedBytes = Capacity / 2 };
        servers[1] = servers[1] with { UsedBytes = Capacity / 2 };
        servers[2] = servers[2] with { UsedBytes = Capacity / 2 };
        var result = PlacementPolicy.Choose(servers, new PlacementRequest(3))!;
        Assert.Equal(["cs-3", "cs-4", "cs-5"], result.Chosen.Select(c => c.Id).Order());
    }

    [Fact]
    public void TwoRacksAliveIsDegradedButNeverTwoOnOneNode()
    {
        Allocate(Servers(4, 2), 200, result =>
        {
            Assert.Equal(3, result.Chosen.Count);
            Assert.Equal(3, result.Chosen.Select(c => c.Node).Distinct().Count());
            Assert.Equal(2, result.Chosen.Select(c => c.Rack).Distinct().Count());
            Assert.True(result.Degraded);
        });
    }

    [Fact]
    public void FewerNodesThanReplicasGivesWhatThereIsDegraded()
    {
        var servers = new List<PlacementCandidate>
        {
            new("a", "node-1", "rack-1", 0, Capacity, 0),
            new("b", "node-1", "rack-2", 0, Capacity, 0),
            new("c", "node-2", "rack-3", 0, Capacity, 0),
        };
        var result = PlacementPolicy.Choose(servers, new PlacementRequest(3))!;
        Assert.Equal(2, result.Chosen.Count);
        Assert.Equal(2, result.Chosen.Select(c => c.Node).Distinct().Count());
        Assert.True(result.Degraded);

        var single = PlacementPolicy.Choose([servers[0]], new PlacementRequest(3))!;
        Assert.Single(single.Chosen);
        Assert.True(single.Degraded);
    }

    [Fact]
    public void PreferredNodeGetsTheFirstReplica()
    {
        var servers = Servers(6, 3);
        servers[4] = servers[4] with { UsedBytes = Capacity / 2 };
        var result = PlacementPolicy.Choose(servers, new PlacementRequest(3, PreferredNode: "node-4"))!;
        Assert.Equal("cs-4", result.Chosen[0].Id);
        Assert.Equal(3, result.Chosen.Select(c => c.Rack).Distinct().Count());
        Assert.False(result.Degraded);

        var unknown = PlacementPolicy.Choose(servers, new PlacementRequest(3, PreferredNode: "elsewhere"))!;
        Assert.Equal(3, unknown.Chosen.Count);
    }

    [Fact]
    public void ExcludedServersAreNeverChosen()
    {
        var excluded = new HashSet<string> { "cs-0", "cs-4" };
        Allocate(Servers(6, 3), 50, _ => { });
        for (var i = 0; i < 20; i++)
        {
            var result = PlacementPolicy.Choose(Servers(6, 3), new PlacementRequest(3, PreferredNode: "node-0", Excluded: excluded))!;
            Assert.DoesNotContain(result.Chosen, c => excluded.Contains(c.Id));
            Assert.Equal(3, result.Chosen.Select(c => c.Rack).Distinct().Count());
        }
    }

    [Fact]
    public void NoServersAliveChoosesNothing()
    {
        Assert.Null(PlacementPolicy.Choose([], new PlacementRequest(3)));
        Assert.Null(PlacementPolicy.Choose(Servers(1, 1), new PlacementRequest(3, Excluded: new HashSet<string> { "cs-0" })));
    }
}
