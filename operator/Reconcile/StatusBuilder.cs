using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>What the reconcile observed, from which the status is computed.</summary>
public sealed record Observed(
    V1StatefulSet? Masters,
    IReadOnlyDictionary<string, V1DaemonSet?> ChunkServersByRack,
    RackGroups Racks,
    MasterReport? Master,
    RolloutDecision Rollout);

/// <summary>Computes a StorageCluster's status from what was observed (pure; the caller writes it only if it changed).</summary>
public static class StatusBuilder
{
    public static StorageClusterStatus Build(StorageCluster c, StorageClusterStatus? previous, Observed o)
    {
        var generation = c.Metadata.Generation;
        var status = new StorageClusterStatus
        {
            ObservedGeneration = generation,
            Conditions = previous?.Conditions?.Select(Clone).ToList() ?? [],
        };
        status.Masters.Desired = c.Spec.Masters.Replicas;
        status.Masters.Ready = o.Masters?.Status?.ReadyReplicas ?? 0;
        status.Masters.Leader = o.Master?.Leader;
        status.Masters.Summary = $"{status.Masters.Ready}/{status.Masters.Desired}";
        foreach (var (rack, ds) in o.ChunkServersByRack.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            status.ChunkServers.Racks.Add(new RackStatus
            {
                Rack = rack,
                Desired = o.Racks.NodesByRack.TryGetValue(rack, out var nodes) ? nodes.Count : 0,
                Ready = ds?.Status?.NumberReady ?? 0,
            });
        }
        status.ChunkServers.Desired = status.ChunkServers.Racks.Sum(r => r.Desired);
        status.ChunkServers.Ready = status.ChunkServers.Racks.Sum(r => r.Ready);
        status.ChunkServers.Summary = $"{status.ChunkServers.Ready}/{status.ChunkServers.Desired}";
        if (o.Master is { } m)
        {
            status.Capacity = new CapacityStatus { TotalBytes = m.CapacityBytes, UsedBytes = m.UsedBytes, Total = Human(m.CapacityBytes) };
            status.DegradedChunks = (long)m.DegradedChunks;
            status.UnderReplicatedChunks = (long)m.UnderReplicatedChunks;
            status.RebuildBytesRemaining = (long)m.RebuildBytesRemaining;
            status.DeadChunkServers = [.. m.DeadChunkServers];
        }

        var mastersReady = status.Masters.Ready >= status.Masters.Desired;
        var chunkServersReady = status.ChunkServers.Desired > 0 && status.ChunkServers.Ready >= status.ChunkServers.Desired;
        var ready = mastersReady && chunkServersReady;
        var problems = new List<string>();
        if (o.Racks.NodesByRack.Count < c.Spec.Replication.MinRacks)
        {
            problems.Add($"{o.Racks.NodesByRack.Count} racks among the storage nodes, {c.Spec.Replication.MinRacks} wanted");
        }
        if (o.Racks.NodesWithoutRack.Count > 0)
        {
            problems.Add($"storage nodes without the {c.Spec.ChunkServers.RackLabel} label run no chunk server: {string.Join(", ", o.Racks.NodesWithoutRack)}");
        }
        if (o.Master is { FullyReplicated: false } master)
        {
            problems.Add($"{master.DegradedChunks} degraded chunks, {master.UnderReplicatedChunks} under-replicated chunks, {master.BadReplicas} bad replicas, " +
                $"{Human((long)master.RebuildBytesRemaining)} left to rebuild" +
                (master.DeadChunkServers.Count > 0 ? $", dead chunk servers: {string.Join(", ", master.DeadChunkServers)}" : ""));
        }
        if (ready && o.Master is null)
        {
            problems.Add("the master does not answer");
        }

        Conditions.Set(status.Conditions, Conditions.Ready, ready, ready ? "AllComponentsReady" : "ComponentsNotReady",
            $"masters {status.Masters.Summary}, chunk servers {status.ChunkServers.Summary}", generation);
        var rolling = o.Rollout.Action != RolloutAction.Done;
        Conditions.Set(status.Conditions, Conditions.Progressing, !ready || rolling,
            rolling ? "RollingUpgrade" : ready ? "Reconciled" : "WaitingForPods",
            rolling ? o.Rollout.Reason : ready ? "desired state reached" : "waiting for pods to become ready", generation);
        Conditions.Set(status.Conditions, Conditions.Degraded, problems.Count > 0, problems.Count > 0 ? "ClusterDegraded" : "Healthy",
            problems.Count > 0 ? string.Join("; ", problems) : "no problems found", generation);
        status.Phase = ready ? (problems.Count > 0 ? "Degraded" : "Running") : "Creating";
        return status;
    }

    public static V1Condition Clone(V1Condition c) => new()
    {
        Type = c.Type, Status = c.Status, Reason = c.Reason, Message = c.Message,
        ObservedGeneration = c.ObservedGeneration, LastTransitionTime = c.LastTransitionTime,
    };

    public static string Human(long bytes)
    {
        string[] units = ["B", "Ki", "Mi", "Gi", "Ti", "Pi"];
        double v = bytes;
        var i = 0;
        while (v >= 1024 && i < units.Length - 1)
        {
            v /= 1024;
            i++;
        }
        return i == 0 ? $"{bytes}B" : $"{v:0.#}{units[i]}";
    }
}
