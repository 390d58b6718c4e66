using FeitianK8s.Master.Placement;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;

namespace FeitianK8s.Master.Cluster;

/// <summary>
/// Turns an allocation request into an <see cref="AllocateChunkCommand"/>: checks the file
/// and epoch, picks replicas (first on the preferred node, else on the writer's node) among alive chunk servers with <see cref="PlacementPolicy"/>.
/// The chunk id is filled in by the single writer; the state re-checks everything on apply.
/// During the report grace (<see cref="ChunkServerLiveness.InGrace"/>) a missing or degraded placement
/// answers Unavailable (retryable) instead of ResourceExhausted or a worse placement.
/// </summary>
public sealed class ChunkAllocator(MasterMetadata metadata, ChunkServerLiveness liveness, ulong chunkSizeBytes)
{
    public AllocateChunkCommand Plan(string path, ulong epoch, string? preferredNode, IEnumerable<string> excluded)
    {
        var error = NameRules.CheckFilePath(path);
        if (error is not null)
        {
            throw new MasterException(error);
        }
        var (replicas, writerNode, candidates, inGrace) = metadata.Read(state =>
        {
            var lease = state.FileLease(path) ?? throw new MasterException(MasterError.NotFound($"file '{path}' does not exist"));
            if (lease.Epoch != epoch)
            {
                throw new MasterException(MasterError.StaleEpoch($"epoch {epoch} of '{path}' is not the current epoch {lease.Epoch}"));
            }
            var alive = new List<PlacementCandidate>();
            foreach (var server in state.ChunkServers)
            {
                var sample = liveness.Last(server.Id);
                if (sample is not null && liveness.IsAlive(sample))
                {
                    alive.Add(new PlacementCandidate(server.Id, server.Node, server.Rack, sample.UsedBytes, sample.CapacityBytes, state.ReplicaCountOn(server.Id)));
                }
            }
            return (lease.Replicas, lease.WriterNode, alive, liveness.InGrace(state.ChunkServers.Select(s => s.Id)));
        });
        var placement = PlacementPolicy.Choose(candidates, new PlacementRequest((int)replicas, string.IsNullOrEmpty(preferredNode) ? writerNode : preferredNode, excluded.ToHashSet(StringComparer.Ordinal)));
        if (inGrace && (placement is null || placement.Degraded))
        {
            // Right after a start or leader change the servers have not all reported: wait for them rather than refuse or place badly.
            throw new MasterException(MasterError.ChunkServersReporting(
                $"chunk servers are still reporting to this master ({candidates.Count} of them so far, grace {liveness.ReportGrace.TotalSeconds:0.#} s); retry shortly"));
        }
        if (placement is null)
        {
            throw new MasterException(MasterError.NoChunkServers($"no alive chunk server can take a replica of a chunk of '{path}'"));
        }
        var command = new AllocateChunkCommand
        {
            Path = path,
            Epoch = epoch,
            PlacementDegraded = placement.Degraded,
            MaxLength = chunkSizeBytes,
        };
        command.ChunkServerIds.AddRange(placement.Chosen.Select(c => c.Id));
        return command;
    }
}
