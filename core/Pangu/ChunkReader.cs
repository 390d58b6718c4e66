using System.Collections.Concurrent;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Reads ranges of one chunk from its replicas: healthy replicas on the client's node
/// first, then the other healthy ones, then (as a last resort) replicas marked bad.
/// Every returned piece is checked against its CRC32C; a corrupt or missing replica
/// is reported to the master and the read fails over to the next replica. A healthy replica kept on
/// this node by a chunk server listed in <see cref="PanguClientOptions.LocalChunkServerDataDirs"/> is
/// first tried straight from its files (<see cref="LocalReplicaReader"/>); when that declines, the
/// same replica is read through its chunk server as usual.
/// </summary>
public sealed class ChunkReader(GrpcChannelCache channels, MasterConnection master, PanguClientOptions options, ILogger logger,
    LocalReplicaReader? local = null)
{
    // Replicas this client saw corrupt, so later reads skip them before the master's view catches up.
    private readonly ConcurrentDictionary<(ulong Chunk, string Server), bool> _knownBad = new();

    /// <summary>
    /// The replica a reader on <paramref name="clientNode"/> reads first while none is known bad: the first on
    /// its node, else the first listed (what <see cref="Order"/> puts first).
    /// </summary>
    public static int FirstToRead(IReadOnlyList<PanguReplica> replicas, string clientNode)
    {
        for (var i = 0; i < replicas.Count; i++)
        {
            if (IsOnNode(replicas[i], clientNode))
            {
                return i;
            }
        }
        return 0;
    }

    public IReadOnlyList<PanguReplica> Order(PanguChunk chunk) => chunk.Replicas
        .OrderBy(r => IsHealthy(chunk, r) ? 0 : 1)
        .ThenBy(r => IsOnNode(r, options.ClientNode) ? 0 : 1)
        .ToArray();

    private bool IsHealthy(PanguChunk chunk, PanguReplica replica) =>
        !replica.Bad && (_knownBad.IsEmpty || !_knownBad.ContainsKey((chunk.Id, replica.ChunkServerId)));

    /// <summary>What <see cref="Order"/> puts first when it is a healthy replica on this node; else null.</summary>
    private PanguReplica? FirstHealthyOnNode(PanguChunk chunk)
    {
        var replicas = chunk.Replicas;
        for (var i = 0; i < replicas.Count; i++)
        {
            if (IsOnNode(replicas[i], options.ClientNode) && IsHealthy(chunk, replicas[i]))
            {
                return replicas[i];
            }
        }
        return null;
    }

    /// <summary>Among healthy replicas, those on the reader's node are read first, then the listed order holds.</summary>
    private static bool IsOnNode(PanguReplica replica, string clientNode) => replica.Node == clientNode;

    /// <summary>
    /// Reads up to destination.Length bytes at offset of the chunk. Returns fewer only at the
    /// end of the chunk. Throws <see cref="PanguException"/> when no replica can serve the range.
    /// </summary>
    public async Task<int> ReadAsync(PanguChunk chunk, long offset, Memory<byte> destination, CancellationToken ct)
    {
        var total = 0;
        while (total < destination.Length)
        {
            var want = Math.Min(destination.Length - total, options.MaxRpcDataBytes);
            var got = await ReadPieceAsync(chunk, offset + total, destination.Slice(total, want), ct);
            total += got;
            if (got < want)
            {
                break;
            }
        }
        return total;
    }

    /// <summary>Current length of an unsealed chunk, asked of the first replica that answers.</summary>
    public async Task<long> CurrentLengthAsync(PanguChunk chunk, CancellationToken ct)
    {
        Exception? last = null;
        foreach (var replica in Order(chunk))
        {
            try
            {
                var info = await ClientFor(replica).GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunk.Id }, Options(ct));
                return (long)info.Length;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                logger.LogDebug("chunk info of {ChunkId} from {Server} failed: {Code}", chunk.Id, replica.ChunkServerId, e.StatusCode);
                last = e;
            }
        }
        throw new PanguException(PanguErrorKind.Unavailable, $"no replica of chunk {chunk.Id} reports its length", last);
    }

    private async Task<int> ReadPieceAsync(PanguChunk chunk, long offset, Memory<byte> destination, CancellationToken ct)
    {
        // The common case, a healthy replica on this node read from its files, without ordering the replicas.
        var triedLocally = local is not null ? FirstHealthyOnNode(chunk) : null;
        if (triedLocally is not null && local!.TryRead(triedLocally, chunk.Id, chunk.Length, offset, destination.Span))
        {
            return destination.Length;
        }
        var failures = new List<string>();
        var allDamaged = true;
        foreach (var replica in Order(chunk))
        {
            if (local is not null && !ReferenceEquals(replica, triedLocally) && IsHealthy(chunk, replica)
                && local.TryRead(replica, chunk.Id, chunk.Length, offset, destination.Span))
            {
                return destination.Length;
            }
            try
            {
                var reply = await ClientFor(replica).ReadAsync(new ReadRequest
                {
                    ChunkId = chunk.Id,
                    Offset = (ulong)offset,
                    Length = (uint)destination.Length,
                }, Options(ct));
                var data = reply.Data.Span;
                if (data.Length > destination.Length || Crc32C.Compute(data) != reply.Crc32C)
                {
                    await ReportBadAsync(chunk, replica, "checksum of returned data does not match", ct);
                    failures.Add($"{replica.ChunkServerId}: checksum mismatch");
                    continue;
                }
                if (data.Length < destination.Length && chunk.Sealed && offset + data.Length < chunk.Length)
                {
                    await ReportBadAsync(chunk, replica, $"short read: {data.Length} bytes at {offset}, chunk length {chunk.Length}", ct);
                    failures.Add($"{replica.ChunkServerId}: short read");
                    continue;
                }
                data.CopyTo(destination.Span);
                return data.Length;
            }
            catch (RpcException e) when (RpcErrors.IsReplicaDamage(e) && !ct.IsCancellationRequested)
            {
                await ReportBadAsync(chunk, replica, $"{e.StatusCode} {FeitianStatus.ReasonOf(e)}", ct);
                failures.Add($"{replica.ChunkServerId}: {e.StatusCode}");
            }
            catch (RpcException e) when (e.StatusCode is not (StatusCode.InvalidArgument or StatusCode.OutOfRange) && !ct.IsCancellationRequested)
            {
                logger.LogWarning("read of chunk {ChunkId} at {Offset} from {Server} failed: {Code}; failing over", chunk.Id, offset, replica.ChunkServerId, e.StatusCode);
                failures.Add($"{replica.ChunkServerId}: {e.StatusCode}");
                allDamaged = false;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                throw new PanguException(PanguErrorKind.InvalidArgument, $"read of chunk {chunk.Id} at {offset} length {destination.Length} refused: {e.Status.Detail}", e);
            }
        }
        throw new PanguException(allDamaged && failures.Count > 0 ? PanguErrorKind.Corrupt : PanguErrorKind.Unavailable,
            $"no replica of chunk {chunk.Id} could serve offset {offset} length {destination.Length}: {string.Join("; ", failures)}");
    }

    private async Task ReportBadAsync(PanguChunk chunk, PanguReplica replica, string reason, CancellationToken ct)
    {
        _knownBad[(chunk.Id, replica.ChunkServerId)] = true;
        local?.Forget(chunk.Id);
        logger.LogWarning("replica of chunk {ChunkId} on {Server} is bad: {Reason}", chunk.Id, replica.ChunkServerId, reason);
        try
        {
            await master.CallAsync("ReportBadReplica", (m, o) => m.ReportBadReplicaAsync(new ReportBadReplicaRequest
            {
                ChunkId = chunk.Id,
                ChunkServerId = replica.ChunkServerId,
                Reason = reason,
            }, o).ResponseAsync, ct);
        }
        catch (RpcException e)
        {
            logger.LogWarning("could not report bad replica of chunk {ChunkId} on {Server}: {Code}", chunk.Id, replica.ChunkServerId, e.StatusCode);
        }
    }

    private ChunkServer.ChunkServerClient ClientFor(PanguReplica replica) => new(channels.Get(replica.Address));

    private CallOptions Options(CancellationToken ct) => new(deadline: DateTime.UtcNow + options.ChunkServerTimeout, cancellationToken: ct);
}
