using FeitianK8s.Master.Cluster;
using FeitianK8s.Master.Rebuild;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;

namespace FeitianK8s.Master.Web;

/// <summary>
/// Read-only views of the leader's state shared by the gRPC API (GetClusterStatus, ListVolumes)
/// and the web console's JSON endpoints. Run under the metadata read lock.
/// </summary>
public sealed class ClusterQueries(ChunkServerLiveness liveness, DeadServerDetector dead, RebuildProgress rebuild, ChunkServerReports reports)
{
    public ClusterStatus Status(MasterStateMachine state)
    {
        var result = new ClusterStatus
        {
            DegradedChunks = state.CountDegradedChunks(),
            BadReplicas = state.CountBadReplicas(),
            UnderReplicatedChunks = (ulong)rebuild.UnderReplicatedChunks,
            Rebuild = new RebuildStatus
            {
                BytesRemaining = rebuild.BytesRemaining,
                BytesPerSecond = rebuild.BytesPerSecond,
                CopiesActive = (uint)rebuild.CopiesActive,
                CopiesCompleted = rebuild.CopiesCompleted,
                CopiesFailed = rebuild.CopiesFailed,
            },
        };
        foreach (var server in state.ChunkServers)
        {
            var sample = liveness.Last(server.Id);
            result.ChunkServers.Add(new ChunkServerStatus
            {
                Id = server.Id,
                Node = server.Node,
                Rack = server.Rack,
                Address = server.Address,
                Alive = sample is not null && liveness.IsAlive(sample),
                CapacityBytes = sample?.CapacityBytes ?? 0,
                UsedBytes = sample?.UsedBytes ?? 0,
                Chunks = sample?.Chunks ?? 0,
                LastHeartbeatUnixMs = sample?.At.ToUnixTimeMilliseconds() ?? 0,
                Dead = dead.IsDead(server.Id),
                Scrub = reports.Scrub(server.Id) is { } scrub
                    ? new ScrubStatus { LastCompletedUnixMs = scrub.LastCompletedUnixMs, BytesVerified = scrub.BytesVerified, BadFound = scrub.BadFound }
                    : null,
                RebuildShare = reports.Share(server.Id)?.Share ?? 0,
            });
        }
        return result;
    }

    /// <summary>Every volume (copies, not the state's own records) with the replica health of its chunks.</summary>
    public List<VolumeInfo> VolumesWithHealth(MasterStateMachine state)
    {
        var volumes = state.ListVolumes().Select(v => v.Clone()).ToList();
        if (volumes.Count == 0)
        {
            return volumes;
        }
        var chunks = state.ChunkViews();
        var live = new Dictionary<string, bool>(StringComparer.Ordinal);
        bool IsLive(string id)
        {
            if (!live.TryGetValue(id, out var value))
            {
                value = liveness.IsAlive(id) && !dead.IsDead(id);
                live[id] = value;
            }
            return value;
        }
        foreach (var volume in volumes)
        {
            var prefix = volume.Directory.TrimEnd('/') + "/";
            var health = new VolumeHealth();
            foreach (var chunk in chunks.Where(c => c.Path.StartsWith(prefix, StringComparison.Ordinal)))
            {
                var counted = chunk.Replicas.Count(r => !r.Bad && IsLive(r.ChunkServerId));
                health.Chunks++;
                if (counted < chunk.Wanted)
                {
                    health.DegradedChunks++;
                }
                if (counted == 0)
                {
                    health.UnavailableChunks++;
                }
            }
            volume.Health = health;
        }
        return volumes;
    }
}
