namespace FeitianK8s.Master.Placement;

/// <summary>A chunk server that may receive a replica, with the load figures placement weighs.</summary>
public sealed record PlacementCandidate(string Id, string Node, string Rack, ulong UsedBytes, ulong CapacityBytes, int Replicas);

/// <summary>
/// OccupiedNodes/OccupiedRacks: nodes and racks that already hold a replica of the chunk (re-replication),
/// treated as taken by the node and rack rules.
/// </summary>
public sealed record PlacementRequest(int Replicas, string? PreferredNode = null, IReadOnlySet<string>? Excluded = null,
    IReadOnlySet<string>? OccupiedNodes = null, IReadOnlySet<string>? OccupiedRacks = null);

/// <summary>Chosen servers in replica order; Degraded when they span fewer racks (or are fewer) than asked.</summary>
public sealed record PlacementResult(IReadOnlyList<PlacementCandidate> Chosen, bool Degraded);

/// <summary>
/// Rack-aware replica placement. Rules, in priority order: never two replicas on one node;
/// distinct racks whenever enough racks are available; least used first. Usage is the
/// used/capacity ratio in whole percent, ties broken by the replicas the server already
/// holds and then by id, so servers of similar fill share allocations evenly between
/// heartbeats. A preferred node gets the first replica when it has an eligible server.
/// Pure: the caller passes only alive servers; no clock, no randomness.
/// </summary>
public static class PlacementPolicy
{
    /// <summary>Returns null when no server is eligible.</summary>
    public static PlacementResult? Choose(IEnumerable<PlacementCandidate> candidates, PlacementRequest request)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(request.Replicas, 1);
        var eligible = candidates
            .Where(c => request.Excluded is null || !request.Excluded.Contains(c.Id))
            .OrderBy(UsagePercent)
            .ThenBy(c => c.Replicas)
            .ThenBy(c => c.Id, StringComparer.Ordinal)
            .ToList();
        if (eligible.Count == 0)
        {
            return null;
        }

        var chosen = new List<PlacementCandidate>(request.Replicas);
        var nodes = new HashSet<string>(request.OccupiedNodes ?? new HashSet<string>(), StringComparer.Ordinal);
        var racks = new HashSet<string>(request.OccupiedRacks ?? new HashSet<string>(), StringComparer.Ordinal);
        void Take(PlacementCandidate c)
        {
            chosen.Add(c);
            nodes.Add(c.Node);
            racks.Add(c.Rack);
        }

        if (!string.IsNullOrEmpty(request.PreferredNode))
        {
            var local = eligible.FirstOrDefault(c => c.Node == request.PreferredNode && !nodes.Contains(c.Node));
            if (local is not null)
            {
                Take(local);
            }
        }
        while (chosen.Count < request.Replicas)
        {
            var next = eligible.FirstOrDefault(c => !nodes.Contains(c.Node) && !racks.Contains(c.Rack))
                ?? eligible.FirstOrDefault(c => !nodes.Contains(c.Node));
            if (next is null)
            {
                break;
            }
            Take(next);
        }
        var degraded = chosen.Count < request.Replicas || chosen.Select(c => c.Rack).Distinct(StringComparer.Ordinal).Count() < request.Replicas;
        return new PlacementResult(chosen, degraded);
    }

    private static ulong UsagePercent(PlacementCandidate c) =>
        c.CapacityBytes == 0 ? 100 : (ulong)(Math.Min(1.0, (double)c.UsedBytes / c.CapacityBytes) * 100);
}
