using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>
/// Events for self-healing, from two successive statuses (pure): a chunk server newly declared dead by the
/// master (Warning ChunkServerDead), and redundancy restored (Normal RedundancyRestored) when the chunks that
/// were degraded or under-replicated are all whole again.
/// </summary>
public static class RedundancyEvents
{
    public static IReadOnlyList<(string Type, string Reason, string Message)> Between(StorageClusterStatus? previous, StorageClusterStatus current)
    {
        var events = new List<(string, string, string)>();
        if (current.DeadChunkServers is null)
        {
            return events; // the master did not answer: nothing known
        }
        var before = previous?.DeadChunkServers ?? [];
        foreach (var id in current.DeadChunkServers.Except(before, StringComparer.Ordinal))
        {
            events.Add(("Warning", "ChunkServerDead",
                $"chunk server {id} declared dead (no heartbeat); {current.UnderReplicatedChunks ?? 0} under-replicated chunks are being rebuilt"));
        }
        var wasMissing = (previous?.UnderReplicatedChunks ?? 0) + (previous?.DegradedChunks ?? 0) > 0;
        var whole = (current.UnderReplicatedChunks ?? 0) == 0 && (current.DegradedChunks ?? 0) == 0;
        if (wasMissing && whole)
        {
            events.Add(("Normal", "RedundancyRestored", "every chunk has its replicas again"));
        }
        return events;
    }
}
