using FeitianK8s.Master.Rebuild;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;

namespace FeitianK8s.Master.Tests;

/// <summary>The pure re-replication planner: priorities, placement rules, removals and the cluster-wide limit.</summary>
public sealed class RebuildPlannerTests
{
    private const ulong Capacity = 1UL << 40;
    private const ulong Length = 64UL << 20;

    /// <summary>cs-0..cs-(n-1) on node-i, rack-(i % racks), all alive.</summary>
    private static List<ServerView> Servers(int count, int racks, params string[] dead) =>
        Enumerable.Range(0, count).Select(i =>
        {
            var id = $"cs-{i}";
            var isDead = dead.Contains(id);
            return new ServerView(id, $"node-{i}", $"rack-{i % racks}", $"http://127.0.0.1:{7000 + i}", !isDead, isDead, 0, Capacity, 0);
        }).ToList();

    private static ChunkView Chunk(ulong id, params string[] replicas) =>
        new(id, $"/f/{id}", 3, 1, Length, true, replicas.Select(r => new ReplicaView(r.TrimEnd('!'), r.EndsWith('!'))).ToList());

    private static RebuildPlan Plan(IReadOnlyList<ChunkView> chunks, IReadOnlyList<ServerView> servers, int maxRebuilds = 100,
        IReadOnlyCollection<InFlightCopy>? inFlight = null) =>
        RebuildPlanner.Plan(chunks, servers, inFlight ?? [], (_, _) => false, maxRebuilds);

    [Fact]
    public void A_chunk_on_a_dead_server_gets_one_copy_on_the_free_rack_from_a_live_replica()
    {
        var servers = Servers(6, 3, dead: "cs-0");
        var plan = Plan([Chunk(1, "cs-0", "cs-1", "cs-2")], servers);
        var copy = Assert.Single(plan.Copies);
        Assert.Equal("rack-0", copy.Target.Rack);
        Assert.Equal("cs-3", copy.Target.Id);
        Assert.Contains(copy.Source.Id, new[] { "cs-1", "cs-2" });
        Assert.Equal(1, plan.UnderReplicatedChunks);
        Assert.Equal(Length, plan.BytesRemaining);
        Assert.Empty(plan.Removals);
    }

    [Fact]
    public void Chunks_with_one_good_replica_left_go_first()
    {
        var servers = Servers(6, 3, dead: ["cs-0", "cs-1"]);
        var chunks = new[] { Chunk(1, "cs-0", "cs-2", "cs-4"), Chunk(2, "cs-0", "cs-1", "cs-5"), Chunk(3, "cs-1", "cs-3", "cs-5") };
        var plan = Plan(chunks, servers, maxRebuilds: 1);
        Assert.Equal(2UL, Assert.Single(plan.Copies).ChunkId);
        Assert.Equal(3, plan.UnderReplicatedChunks);
        Assert.Equal(4 * Length, plan.BytesRemaining);
    }

    [Fact]
    public void Copies_never_land_on_a_node_holding_the_chunk_and_prefer_distinct_racks()
    {
        // Two servers per node on node-a: a copy may not go to the second server of a node that holds a replica.
        var servers = new List<ServerView>
        {
            new("a1", "node-a", "rack-0", "http://a1", true, false, 0, Capacity, 0),
            new("a2", "node-a", "rack-0", "http://a2", true, false, 0, Capacity, 0),
            new("b1", "node-b", "rack-1", "http://b1", true, false, 0, Capacity, 0),
            new("c1", "node-c", "rack-1", "http://c1", true, false, 0, Capacity, 0),
            new("d1", "node-d", "rack-2", "http://d1", false, true, 0, Capacity, 0),
        };
        var plan = Plan([Chunk(1, "a1", "b1", "d1")], servers);
        var copy = Assert.Single(plan.Copies);
        Assert.Equal("c1", copy.Target.Id); // a2 shares node-a; rack-2 has no live server, so a second rack-1 server
    }

    [Fact]
    public void A_bad_replica_is_replaced_then_removed_and_the_last_good_replica_is_never_removed()
    {
        var servers = Servers(6, 3);
        var bad = Plan([Chunk(1, "cs-0!", "cs-1", "cs-2")], servers);
        Assert.Equal("cs-3", Assert.Single(bad.Copies).Target.Id);
        Assert.Empty(bad.Removals);

        var replaced = Plan([Chunk(1, "cs-0!", "cs-1", "cs-2", "cs-3")], servers);
        Assert.Empty(replaced.Copies);
        var removal = Assert.Single(replaced.Removals);
        Assert.Equal("cs-0", removal.ChunkServerId);

        // One good replica and two bad ones: copies are planned, nothing is removed.
        var last = Plan([Chunk(1, "cs-0!", "cs-1!", "cs-2")], servers);
        Assert.Equal(2, last.Copies.Count);
        Assert.All(last.Copies, c => Assert.Equal("cs-2", c.Source.Id));
        Assert.Empty(last.Removals);

        // No good replica at all: nothing to copy from and nothing removed.
        var none = Plan([Chunk(1, "cs-0!", "cs-1!")], servers);
        Assert.Empty(none.Copies);
        Assert.Empty(none.Removals);
    }

    [Fact]
    public void A_server_back_with_an_empty_disk_becomes_the_target_for_its_own_lost_replicas()
    {
        // Three servers, three replicas: cs-0 lost its disk and came back (same id), its replica is bad.
        var servers = Servers(3, 3);
        var plan = Plan([Chunk(1, "cs-0!", "cs-1", "cs-2")], servers);
        Assert.Empty(plan.Copies);
        var removal = Assert.Single(plan.Removals);
        Assert.Equal(("cs-0", 1UL), (removal.ChunkServerId, removal.ChunkId));

        // Once the bad record is gone (and the server deleted its file), the server takes the copy.
        var next = Plan([Chunk(1, "cs-1", "cs-2")], servers);
        Assert.Equal("cs-0", Assert.Single(next.Copies).Target.Id);

        // The server came back under a new id on the same node (its whole data directory lost): the old id is dead, the new one takes the copy.
        var replaced = Servers(3, 3, dead: "cs-0").Append(new ServerView("cs-new", "node-0", "rack-0", "http://127.0.0.1:7000", true, false, 0, Capacity, 0)).ToList();
        Assert.Equal("cs-new", Assert.Single(Plan([Chunk(1, "cs-0", "cs-1", "cs-2")], replaced).Copies).Target.Id);

        // A bad replica on a server that is not alive, or with somewhere else to copy to, stays until the chunk is whole.
        var down = Servers(3, 3).Select(s => s.Id == "cs-0" ? s with { Alive = false } : s).ToList();
        Assert.Empty(Plan([Chunk(1, "cs-0!", "cs-1", "cs-2")], down).Removals);
        Assert.Empty(Plan([Chunk(1, "cs-0!", "cs-1", "cs-2")], Servers(6, 3)).Removals);
    }

    [Fact]
    public void A_returned_server_makes_a_replica_surplus_and_the_crowded_rack_loses_one()
    {
        var servers = Servers(6, 3);
        // cs-0 came back: cs-0 and cs-3 share rack-0, so one of them goes, leaving three racks.
        var plan = Plan([Chunk(1, "cs-0", "cs-1", "cs-2", "cs-3")], servers);
        var removal = Assert.Single(plan.Removals);
        Assert.Contains(removal.ChunkServerId, new[] { "cs-0", "cs-3" });
        Assert.Empty(plan.Copies);
    }

    [Fact]
    public void Nothing_is_removed_while_a_copy_of_the_chunk_is_in_flight()
    {
        var servers = Servers(6, 3, dead: "cs-0");
        var plan = Plan([Chunk(1, "cs-0", "cs-1", "cs-2")], servers, inFlight: [new InFlightCopy(1, "cs-1", "cs-3", Length)]);
        Assert.Empty(plan.Copies);
        Assert.Empty(plan.Removals);
    }

    [Fact]
    public void Max_rebuilds_caps_copies_and_spreads_them_over_sources_and_targets()
    {
        var servers = Servers(12, 3, dead: "cs-0");
        var chunks = Enumerable.Range(1, 50).Select(i => Chunk((ulong)i, "cs-0", $"cs-{1 + i % 2 * 3 + (i % 3 == 0 ? 0 : 0)}", $"cs-{2 + (i % 3) * 3}"))
            .Where(c => c.Replicas.Select(r => r.ChunkServerId).Distinct().Count() == 3).ToList();
        Assert.NotEmpty(chunks);
        var plan = Plan(chunks, servers, maxRebuilds: 8);
        Assert.True(plan.Copies.Count <= 8);
        Assert.NotEmpty(plan.Copies);
        var perServer = (2 * 8 + 10) / 11;
        var load = plan.Copies.SelectMany(c => new[] { c.Source.Id, c.Target.Id }).GroupBy(id => id).ToDictionary(g => g.Key, g => g.Count());
        Assert.All(load.Values, n => Assert.True(n <= perServer, $"a server takes part in {n} copies, more than {perServer}"));

        var busy = Plan(chunks, servers, maxRebuilds: 8, inFlight: Enumerable.Range(0, 8).Select(i => new InFlightCopy(1000UL + (ulong)i, "cs-1", "cs-3", Length)).ToList());
        Assert.Empty(busy.Copies);
    }

    [Fact]
    public void An_open_chunk_with_a_replica_on_a_dead_server_is_sealed_first()
    {
        var servers = Servers(6, 3, dead: "cs-0");
        var open = new ChunkView(1, "/f/1", 3, 1, 1000, false, [new("cs-0", false), new("cs-1", false), new("cs-2", false)]);
        var plan = Plan([open], servers);
        Assert.Equal(1UL, Assert.Single(plan.Seals).ChunkId);
        Assert.Empty(plan.Copies);
        var writing = new ChunkView(2, "/f/2", 3, 1, 1000, false, [new("cs-3", false), new("cs-1", false), new("cs-2", false)]);
        Assert.Empty(Plan([writing], servers).Seals);
    }

    [Fact]
    public void Good_replicas_on_too_few_racks_get_a_copy_on_a_new_rack()
    {
        var servers = Servers(6, 3);
        var plan = Plan([Chunk(1, "cs-0", "cs-3", "cs-1")], servers); // rack-0, rack-0, rack-1
        var copy = Assert.Single(plan.Copies);
        Assert.Equal("rack-2", copy.Target.Rack);
        Assert.Equal(0, plan.UnderReplicatedChunks);
    }

    [Fact]
    public void The_log_refuses_to_remove_a_chunks_last_good_replica()
    {
        var state = new MasterStateMachine();
        var index = 0UL;
        void Apply(MasterCommand c) => Assert.True(state.Apply(++index, c).IsOk);
        foreach (var id in new[] { "cs-0", "cs-1" })
        {
            Apply(new MasterCommand { RegisterChunkServer = new RegisterChunkServerCommand { Server = new ChunkServerRecord { Id = id, Node = "n-" + id, Rack = "r", Address = "http://" + id } } });
        }
        Apply(new MasterCommand { CreateFile = new CreateFileCommand { Path = "/a", Replicas = 2 } });
        Apply(new MasterCommand { OpenForAppend = new OpenForAppendCommand { Path = "/a" } });
        Apply(new MasterCommand { AllocateChunk = new AllocateChunkCommand { Path = "/a", Epoch = 1, ChunkId = 1, MaxLength = 100, ChunkServerIds = { "cs-0", "cs-1" } } });
        Apply(new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/a", Epoch = 1, ChunkId = 1, Length = 10, Sealed = true } });
        Apply(new MasterCommand { RemoveReplica = new RemoveReplicaCommand { ChunkId = 1, ChunkServerId = "cs-0" } });
        var refused = state.Apply(index + 1, new MasterCommand { RemoveReplica = new RemoveReplicaCommand { ChunkId = 1, ChunkServerId = "cs-1" } });
        Assert.False(refused.IsOk);
        Assert.Equal(MasterErrorReasons.LastGoodReplica, refused.Error!.Reason);
        Assert.Equal([1UL], state.PendingDeletions("cs-0", 10));
        // A copy at the wrong length is refused; at the sealed length it joins and cancels a pending deletion.
        Assert.False(state.Apply(index + 1, new MasterCommand { AddReplica = new AddReplicaCommand { ChunkId = 1, ChunkServerId = "cs-0", Length = 9 } }).IsOk);
        Apply(new MasterCommand { AddReplica = new AddReplicaCommand { ChunkId = 1, ChunkServerId = "cs-0", Length = 10 } });
        Assert.Empty(state.PendingDeletions("cs-0", 10));
        Assert.Equal(2, state.StatFile("/a").Chunks[0].Replicas.Count);
    }
}
