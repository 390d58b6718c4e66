using FeitianK8s.Master.Placement;

namespace FeitianK8s.Master.Rebuild;

/// <summary>A replica as the log records it.</summary>
public sealed record ReplicaView(string ChunkServerId, bool Bad);

/// <summary>A chunk with what its file wants (replica count) and the epoch copies are recorded with.</summary>
public sealed record ChunkView(ulong ChunkId, string Path, int Wanted, ulong Epoch, ulong Length, bool Sealed, IReadOnlyList<ReplicaView> Replicas);

/// <summary>
/// A chunk server as the planner sees it. Alive: heartbeat within the allocation timeout (may send or
/// receive copies). Dead: no heartbeat for --dead-after (its replicas no longer count as good).
/// A server that is neither is "missing": its replicas still count, but it takes no copies.
/// </summary>
public sealed record ServerView(string Id, string Node, string Rack, string Address, bool Alive, bool Dead, ulong UsedBytes, ulong CapacityBytes, int Replicas);

/// <summary>A copy running now (scheduled earlier, not yet finished or timed out).</summary>
public sealed record InFlightCopy(ulong ChunkId, string SourceId, string TargetId, ulong Length);

public sealed record PlannedCopy(ulong ChunkId, string Path, ulong Epoch, ulong Length, ServerView Source, ServerView Target, int GoodReplicas);

public sealed record PlannedRemoval(ulong ChunkId, string ChunkServerId, string Why);

public sealed record PlannedSeal(ulong ChunkId, string Path);

/// <summary>What to do now, plus the counts people see (under-replicated chunks, bytes left to copy).</summary>
public sealed record RebuildPlan(
    IReadOnlyList<PlannedCopy> Copies,
    IReadOnlyList<PlannedRemoval> Removals,
    IReadOnlyList<PlannedSeal> Seals,
    int UnderReplicatedChunks,
    ulong BytesRemaining);

/// <summary>
/// The re-replication planner (HDFS RedundancyMonitor style), pure: state, liveness and the copies in
/// flight in; the copies, removals and seals to start now out. Rules:
/// <list type="bullet">
/// <item>A replica is good when it is not reported bad and its server is not dead.</item>
/// <item>A sealed chunk with fewer good replicas than its file wants gets copies from a good replica on an
/// alive server, placed like new chunks (<see cref="PlacementPolicy"/>: never two on one node, distinct racks
/// when possible, least used first). Fewest good replicas first.</item>
/// <item>A sealed chunk whose good replicas span fewer racks than they could gets one copy to a new rack (lowest
/// priority); the surplus replica is then removed from the most crowded rack.</item>
/// <item>Surplus, bad and dead replicas are removed only once the chunk has all its good replicas and no copy is
/// in flight for it, so the last good replica is never removed.</item>
/// <item>An open chunk with a replica that is bad or on a dead server has lost its writer's pipeline: it is sealed
/// (then re-replicated).</item>
/// <item>At most <c>maxRebuilds</c> copies run cluster-wide, and each server takes part (as source or target) in
/// at most ceil(2 × maxRebuilds / alive servers) of them, so no single server carries the rebuild.</item>
/// <item>Targets whose last copy failed recently (<c>avoidTargets</c>) take no copies for a while.</item>
/// <item>When no server can take a missing copy but an alive server holds a bad replica of the chunk (a disk lost and
/// the server back empty, same id), that bad replica is removed at once, so the server becomes the target. A replica
/// on a dead server does not keep other servers of its node from taking a copy (the server back under a new id).</item>
/// </list>
/// </summary>
public static class RebuildPlanner
{
    public static RebuildPlan Plan(
        IReadOnlyList<ChunkView> chunks,
        IReadOnlyList<ServerView> servers,
        IReadOnlyCollection<InFlightCopy> inFlight,
        Func<string, ulong, bool> deletionPending,
        int maxRebuilds,
        IReadOnlySet<string>? avoidTargets = null)
    {
        var byId = servers.ToDictionary(s => s.Id, StringComparer.Ordinal);
        bool IsGood(ReplicaView r) => !r.Bad && byId.TryGetValue(r.ChunkServerId, out var s) && !s.Dead;
        var alive = servers.Where(s => s.Alive && !s.Dead).ToList();
        var aliveRacks = alive.Select(s => s.Rack).Distinct(StringComparer.Ordinal).Count();
        var flightsByChunk = inFlight.GroupBy(c => c.ChunkId).ToDictionary(g => g.Key, g => g.ToList());

        var needs = new List<Need>();
        var removals = new List<PlannedRemoval>();
        var seals = new List<PlannedSeal>();
        var underReplicated = 0;
        ulong bytesRemaining = 0;
        foreach (var chunk in chunks)
        {
            var good = chunk.Replicas.Where(IsGood).ToList();
            var flights = flightsByChunk.GetValueOrDefault(chunk.ChunkId) ?? [];
            var missing = chunk.Wanted - good.Count;
            if (missing > 0)
            {
                underReplicated++;
                bytesRemaining += (ulong)missing * chunk.Length;
            }
            if (!chunk.Sealed)
            {
                if (good.Count < chunk.Replicas.Count && good.Count > 0)
                {
                    seals.Add(new PlannedSeal(chunk.ChunkId, chunk.Path));
                }
                continue;
            }
            if (good.Count == 0)
            {
                continue; // nothing to copy from; the replicas may come back
            }
            if (missing > 0)
            {
                if (missing > flights.Count)
                {
                    needs.Add(new Need(chunk, good, missing - flights.Count, NewRackOnly: false));
                }
                continue;
            }
            if (flights.Count > 0)
            {
                continue;
            }
            foreach (var replica in chunk.Replicas.Where(r => !IsGood(r)))
            {
                removals.Add(new PlannedRemoval(chunk.ChunkId, replica.ChunkServerId, replica.Bad ? "bad" : "on a dead server"));
            }
            var racks = RacksOf(good, byId);
            if (good.Count > chunk.Wanted)
            {
                removals.AddRange(Surplus(chunk, good, byId).Select(r => new PlannedRemoval(chunk.ChunkId, r.ChunkServerId, "surplus")));
            }
            else if (racks.Count < Math.Min(chunk.Wanted, aliveRacks))
            {
                needs.Add(new Need(chunk, good, 1, NewRackOnly: true));
            }
        }

        var copies = new List<PlannedCopy>();
        var budget = maxRebuilds - inFlight.Count;
        if (budget > 0 && alive.Count > 0)
        {
            var perServer = Math.Max(1, (2 * maxRebuilds + alive.Count - 1) / alive.Count);
            var load = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var copy in inFlight)
            {
                load[copy.SourceId] = load.GetValueOrDefault(copy.SourceId) + 1;
                load[copy.TargetId] = load.GetValueOrDefault(copy.TargetId) + 1;
            }
            int Load(string id) => load.GetValueOrDefault(id);
            foreach (var need in needs.OrderBy(n => n.NewRackOnly).ThenBy(n => n.Good.Count).ThenBy(n => n.Chunk.ChunkId))
            {
                if (budget <= 0)
                {
                    break;
                }
                var chunk = need.Chunk;
                var flights = flightsByChunk.GetValueOrDefault(chunk.ChunkId) ?? [];
                // A replica on a dead server does not hold its node: a server that replaced it there (a lost disk, a new id) may take the copy.
                var occupiedNodes = chunk.Replicas.Where(r => byId.TryGetValue(r.ChunkServerId, out var holder) && !holder.Dead).Select(r => byId[r.ChunkServerId].Node)
                    .Concat(flights.Where(f => byId.ContainsKey(f.TargetId)).Select(f => byId[f.TargetId].Node))
                    .ToHashSet(StringComparer.Ordinal);
                var occupiedRacks = RacksOf(need.Good, byId);
                occupiedRacks.UnionWith(flights.Where(f => byId.ContainsKey(f.TargetId)).Select(f => byId[f.TargetId].Rack));
                for (var i = 0; i < need.Copies && budget > 0; i++)
                {
                    var source = need.Good.Select(r => byId[r.ChunkServerId])
                        .Where(s => s.Alive && Load(s.Id) < perServer)
                        .OrderBy(s => Load(s.Id)).ThenBy(s => s.Id, StringComparer.Ordinal)
                        .FirstOrDefault();
                    if (source is null)
                    {
                        break;
                    }
                    var candidates = alive
                        .Where(s => Load(s.Id) < perServer && !deletionPending(s.Id, chunk.ChunkId) && avoidTargets?.Contains(s.Id) != true
                            && chunk.Replicas.All(r => r.ChunkServerId != s.Id) && flights.All(f => f.TargetId != s.Id))
                        .Select(s => new PlacementCandidate(s.Id, s.Node, s.Rack, s.UsedBytes, s.CapacityBytes, s.Replicas + Load(s.Id)));
                    var placed = PlacementPolicy.Choose(candidates, new PlacementRequest(1, OccupiedNodes: occupiedNodes, OccupiedRacks: occupiedRacks));
                    var target = placed?.Chosen.FirstOrDefault();
                    if (target is null && !need.NewRackOnly && BadReplicaBlockingTarget(chunk, byId, Load, perServer, avoidTargets) is { } blocking)
                    {
                        // Its server is the only place left for the copy (e.g. it lost its disk and came back empty):
                        // dropping a bad replica loses nothing, and the server takes the copy once it deleted its file.
                        removals.Add(new PlannedRemoval(chunk.ChunkId, blocking.ChunkServerId, "bad, and its server is the only rebuild target left"));
                        break;
                    }
                    if (target is null || (need.NewRackOnly && occupiedRacks.Contains(target.Rack)))
                    {
                        break;
                    }
                    copies.Add(new PlannedCopy(chunk.ChunkId, chunk.Path, chunk.Epoch, chunk.Length, source, byId[target.Id], need.Good.Count));
                    occupiedNodes.Add(target.Node);
                    occupiedRacks.Add(target.Rack);
                    load[source.Id] = Load(source.Id) + 1;
                    load[target.Id] = Load(target.Id) + 1;
                    budget--;
                }
            }
        }
        return new RebuildPlan(copies, removals, seals, underReplicated, bytesRemaining);
    }

    /// <summary>A bad replica on an alive server that could otherwise take a copy of the chunk (no other replica on its node).</summary>
    private static ReplicaView? BadReplicaBlockingTarget(ChunkView chunk, Dictionary<string, ServerView> byId, Func<string, int> load, int perServer,
        IReadOnlySet<string>? avoidTargets) =>
        chunk.Replicas
            .Where(r => r.Bad && byId.TryGetValue(r.ChunkServerId, out var s) && s.Alive && !s.Dead && load(s.Id) < perServer
                && avoidTargets?.Contains(s.Id) != true
                && chunk.Replicas.Count(o => byId.TryGetValue(o.ChunkServerId, out var os) && os.Node == s.Node) == 1)
            .OrderBy(r => r.ChunkServerId, StringComparer.Ordinal)
            .FirstOrDefault();

    /// <summary>Good replicas beyond what the file wants, taken from the most crowded racks first.</summary>
    private static List<ReplicaView> Surplus(ChunkView chunk, List<ReplicaView> good, Dictionary<string, ServerView> byId)
    {
        var keep = good.ToList();
        var surplus = new List<ReplicaView>();
        while (keep.Count > chunk.Wanted)
        {
            var victim = keep
                .OrderByDescending(r => keep.Count(o => byId[o.ChunkServerId].Rack == byId[r.ChunkServerId].Rack))
                .ThenBy(r => byId[r.ChunkServerId].Alive)
                .ThenByDescending(r => UsageRatio(byId[r.ChunkServerId]))
                .ThenByDescending(r => r.ChunkServerId, StringComparer.Ordinal)
                .First();
            keep.Remove(victim);
            surplus.Add(victim);
        }
        return surplus;
    }

    private static HashSet<string> RacksOf(IEnumerable<ReplicaView> replicas, Dictionary<string, ServerView> byId) =>
        replicas.Select(r => byId[r.ChunkServerId].Rack).ToHashSet(StringComparer.Ordinal);

    private static double UsageRatio(ServerView s) => s.CapacityBytes == 0 ? 1 : (double)s.UsedBytes / s.CapacityBytes;

    private sealed record Need(ChunkView Chunk, List<ReplicaView> Good, int Copies, bool NewRackOnly);
}
