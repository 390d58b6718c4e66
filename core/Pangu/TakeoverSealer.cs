using FeitianK8s.Proto.ChunkServer;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Seal rule for a chunk left open by an earlier writer: fence every replica with the new epoch
/// while asking its length, and seal all that answer at the MINIMUM. Acknowledged bytes are on
/// every replica, so the minimum covers them; the higher epoch fences the old writer.
/// </summary>
public sealed class TakeoverSealer(ReplicaFanOut fanOut, ILogger logger)
{
    /// <summary>
    /// Returns the sealed length and the chunk servers that did not answer. Throws
    /// <see cref="PanguException"/> (Unavailable) when no replica answers.
    /// </summary>
    public async Task<(long Length, IReadOnlyList<string> Unreachable)> SealAsync(string path, PanguChunk chunk, ulong epoch, CancellationToken ct)
    {
        // Fence first, then read: a replica's length is final for the old writer once it holds the new epoch,
        // so an append the old writer gets acknowledged (by every replica) afterwards cannot exist, and the
        // minimum covers everything it acknowledged, even with a pipeline of appends in flight.
        var infos = await fanOut.CallAsync(chunk.Replicas, (c, o) => c.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunk.Id, FenceEpoch = epoch }, o).ResponseAsync, ct);
        var staleInfo = infos.FirstOrDefault(r => r.Error is { } e && RpcErrors.IsStaleEpoch(e));
        if (staleInfo is not null)
        {
            throw new FencedException(path, epoch, staleInfo.Error);
        }
        var answered = infos.Where(r => r.Ok).ToArray();
        if (answered.Length == 0)
        {
            // Replicas that say "not found" never got the chunk; if nobody has it, no byte of it was acknowledged.
            if (infos.Any(r => r.Error is { } e && e.StatusCode == Grpc.Core.StatusCode.NotFound))
            {
                logger.LogWarning("open chunk {ChunkId} of {Path} exists on no replica: sealing it empty", chunk.Id, path);
                return (0, Unreachable(infos));
            }
            throw new PanguException(PanguErrorKind.Unavailable,
                $"cannot take over {path}: no replica of open chunk {chunk.Id} answers ({string.Join("; ", infos.Select(i => $"{i.Replica.ChunkServerId}: {i.Error?.StatusCode}"))})");
        }
        var sealedOnes = answered.Where(r => r.Value!.Sealed).ToArray();
        var length = (long)(sealedOnes.Length > 0 ? sealedOnes.Min(r => r.Value!.Length) : answered.Min(r => r.Value!.Length));
        var targets = answered.Where(r => !(r.Value!.Sealed && (long)r.Value.Length == length)).Select(r => r.Replica).ToArray();
        logger.LogInformation("taking over {Path} with epoch {Epoch}: sealing chunk {ChunkId} at {Length} (replica lengths {Lengths})",
            path, epoch, chunk.Id, length, string.Join(",", answered.Select(a => a.Value!.Length)));
        await fanOut.CallAsync(targets, (c, o) => c.SyncAsync(new SyncRequest { ChunkId = chunk.Id }, o).ResponseAsync, ct);
        var seals = await fanOut.CallAsync(targets, (c, o) => c.SealAsync(new SealRequest { ChunkId = chunk.Id, Epoch = epoch, Length = (ulong)length }, o).ResponseAsync, ct);
        var stale = seals.FirstOrDefault(s => s.Error is { } e && RpcErrors.IsStaleEpoch(e));
        if (stale is not null)
        {
            throw new FencedException(path, epoch, stale.Error);
        }
        if (targets.Length > 0 && seals.All(s => !s.Ok) && sealedOnes.Length == 0)
        {
            throw new PanguException(PanguErrorKind.Unavailable, $"cannot take over {path}: sealing chunk {chunk.Id} at {length} failed on every replica");
        }
        return (length, Unreachable(infos));
    }

    private static string[] Unreachable<T>(IReadOnlyList<ReplicaResult<T>> results) =>
        results.Where(r => r.Error is { } e && RpcErrors.IsUnavailable(e)).Select(r => r.Replica.ChunkServerId).ToArray();
}
