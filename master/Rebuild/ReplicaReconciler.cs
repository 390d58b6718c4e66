using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Compares what a chunk server reports (its inventory at registration, or lost chunks in a heartbeat) with the
/// replicas the master records there, and names the replicas that are bad: a sealed chunk missing from the
/// inventory, a copy that is open or of another length than the sealed one (stale: it missed the seal while the
/// server was away), or a chunk the server says it lost. Replicas already marked bad are not named again.
/// </summary>
public static class ReplicaReconciler
{
    public static List<(ulong ChunkId, string Reason)> BadOnRegistration(MasterStateMachine state, string chunkServerId, IEnumerable<ChunkReport> inventory)
    {
        var reported = inventory.GroupBy(c => c.ChunkId).ToDictionary(g => g.Key, g => g.First());
        var bad = new List<(ulong, string)>();
        foreach (var chunk in state.ChunkViews())
        {
            var replica = chunk.Replicas.FirstOrDefault(r => r.ChunkServerId == chunkServerId);
            if (replica is null || replica.Bad || !chunk.Sealed)
            {
                continue;
            }
            if (!reported.TryGetValue(chunk.ChunkId, out var report))
            {
                bad.Add((chunk.ChunkId, "missing from the chunk server's inventory"));
            }
            else if (!report.Sealed || report.Length != chunk.Length)
            {
                bad.Add((chunk.ChunkId, $"stale copy (length {report.Length}, sealed {report.Sealed}; chunk sealed at {chunk.Length})"));
            }
        }
        return bad;
    }

    public static List<ulong> LostReplicas(MasterStateMachine state, string chunkServerId, IEnumerable<ulong> lost)
    {
        var result = new List<ulong>();
        foreach (var id in lost.Distinct())
        {
            var found = state.FindChunk(id);
            if (found is { } f && f.Chunk.Replicas.Any(r => r.ChunkServerId == chunkServerId && !r.Bad))
            {
                result.Add(id);
            }
        }
        return result;
    }
}
