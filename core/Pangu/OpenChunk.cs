using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.Master;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>How a fanned-out append to the open chunk ended.</summary>
public enum ChunkAppendOutcome { Acknowledged, ChunkFull, ReplicaFailed }

/// <summary>
/// The chunk an appender is writing. <see cref="Length"/> is the acknowledged length:
/// bytes every replica accepted. It only grows when all replicas acknowledged an append,
/// so each replica holds at least <see cref="Length"/> bytes and sealing at it loses nothing.
/// </summary>
public sealed class OpenChunk(ChunkLocation location, string path, ulong epoch, ReplicaFanOut fanOut, ILogger logger)
{
    public ulong Id { get; } = location.ChunkId;
    public long FileOffset { get; } = (long)location.FileOffset;
    public IReadOnlyList<PanguReplica> Replicas { get; } = location.Replicas.Select(ProtoMapping.ToReplica).ToArray();
    public bool PlacementDegraded { get; } = location.PlacementDegraded;

    /// <summary>Largest length the chunk may reach; lowered when a replica reports the chunk full.</summary>
    public long MaxLength { get; private set; } = location.MaxLength == 0 ? long.MaxValue : (long)location.MaxLength;

    public long Length { get; private set; }

    /// <summary>Replicas that failed the last operation, by chunk-server id.</summary>
    public IReadOnlyList<string> FailedServers { get; private set; } = [];

    public PanguChunk ToChunk(bool sealedFlag) => new(Id, FileOffset, Length, sealedFlag, PlacementDegraded, Replicas);

    public async Task<bool> CreateAsync(CancellationToken ct)
    {
        var results = await fanOut.CallAsync(Replicas, (c, o) => c.CreateChunkAsync(new CreateChunkRequest
        {
            ChunkId = Id,
            Epoch = epoch,
            MaxLength = MaxLength == long.MaxValue ? 0 : (ulong)MaxLength,
        }, o).ResponseAsync, ct);
        return Judge(results, "create");
    }

    /// <summary>Bytes sent to the replicas: the acknowledged length plus the appends still in flight.</summary>
    public long SentLength { get; private set; }

    /// <summary>
    /// Sends an append at <see cref="SentLength"/> to every replica without waiting for earlier ones
    /// (the chunk servers apply them in offset order). Its answers must be judged with
    /// <see cref="Complete"/> in the order the appends were sent. With
    /// <see cref="PanguClientOptions.AppendStreams"/> it goes as a frame of the chunk's long-lived
    /// AppendStream to each replica (opened on the first append), else as a unary Append.
    /// </summary>
    public Task<IReadOnlyList<ReplicaResult<AppendResponse>>> Send(ReadOnlyMemory<byte> data, bool fua)
    {
        var offset = (ulong)SentLength;
        var crc = Crc32C.Compute(data.Span);
        SentLength += data.Length;
        if (!fanOut.Options.AppendStreams)
        {
            return SendUnary(offset, data, crc, fua);
        }
        _streams ??= new ReplicaAppendStream?[Replicas.Count];
        _ways ??= Enumerable.Repeat(fanOut.Options.FramedAppendStreams ? AppendWay.Framed : AppendWay.Grpc, Replicas.Count).ToArray();
        return ReplicaFanOut.CollectAsync(Replicas, i => SendFrameAsync(i, offset, data, crc, fua));
    }

    private bool DropsBehind(int replica) =>
        fanOut.Options.DropBehindUnreadReplicas && replica != ChunkReader.FirstToRead(Replicas, fanOut.Options.ClientNode);

    /// <summary>How appends reach one replica: each step down is taken once a chunk server answers Unimplemented.</summary>
    private enum AppendWay { Framed, Grpc, Unary }

    private ReplicaAppendStream?[]? _streams;
    private AppendWay[]? _ways;

    private async Task<AppendResponse> SendFrameAsync(int replica, ulong offset, ReadOnlyMemory<byte> data, uint crc, bool fua)
    {
        // The arrays of this send: a close meanwhile replaces the fields, never these.
        var ways = _ways!;
        var streams = _streams!;
        while (ways[replica] != AppendWay.Unary)
        {
            var way = ways[replica];
            var stream = streams[replica] ??= new ReplicaAppendStream(fanOut.AppendTransportFor(Replicas[replica], way == AppendWay.Framed), Id, epoch,
                fanOut.Options.ChunkServerTimeout, DropsBehind(replica));
            try
            {
                return await stream.SendAsync(offset, data, crc, fua).ConfigureAwait(false);
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unimplemented)
            {
                // A chunk server of an older version, which applied nothing of this stream: frames still waiting on
                // it all land here; the first moves the replica one way down, and each resends its frame that way
                // (the chunk server holds a frame that arrives before its predecessor).
                if (ways[replica] == way)
                {
                    logger.LogInformation("chunk server {Server} has no {Way} appends ({Detail}); appending to chunk {ChunkId} {Next}",
                        Replicas[replica].ChunkServerId, way, e.Status.Detail, Id, way == AppendWay.Framed ? "over the gRPC AppendStream" : "with unary calls");
                    ways[replica] = way + 1;
                    if (ReferenceEquals(streams[replica], stream))
                    {
                        streams[replica] = null;
                    }
                }
            }
        }
        var deadline = DateTime.UtcNow + fanOut.Options.ChunkServerTimeout;
        return await fanOut.ClientFor(Replicas[replica]).AppendAsync(UnaryRequest(offset, data, crc, fua), deadline: deadline).ResponseAsync.ConfigureAwait(false);
    }

    private Task<IReadOnlyList<ReplicaResult<AppendResponse>>> SendUnary(ulong offset, ReadOnlyMemory<byte> data, uint crc, bool fua)
    {
        var request = UnaryRequest(offset, data, crc, fua);
        return fanOut.CallAsync(Replicas, (c, o) => c.AppendAsync(request, o).ResponseAsync, CancellationToken.None);
    }

    private AppendRequest UnaryRequest(ulong offset, ReadOnlyMemory<byte> data, uint crc, bool fua) => new()
    {
        ChunkId = Id,
        Epoch = epoch,
        ExpectedOffset = offset,
        Data = UnsafeByteOperations.UnsafeWrap(data),
        Crc32C = crc,
        Fua = fua,
    };

    /// <summary>Ends the append streams (after a seal, a failure or a fence); frames still held by a server are answered first.</summary>
    public async Task CloseStreamsAsync()
    {
        var streams = _streams;
        _streams = null;
        _ways = null;
        if (streams is not null)
        {
            await Task.WhenAll(streams.OfType<ReplicaAppendStream>().Select(s => s.DisposeAsync().AsTask())).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Judges the answers to the oldest append in flight, of <paramref name="size"/> bytes: the acknowledged
    /// length grows only when every replica took it at exactly the acknowledged length.
    /// </summary>
    public ChunkAppendOutcome Complete(IReadOnlyList<ReplicaResult<AppendResponse>> results, int size)
    {
        var expected = (ulong)(Length + size);
        var wrongLength = results.Where(r => r.Ok && r.Value!.Length != expected).Select(r => r.Replica.ChunkServerId).ToArray();
        var full = results.Any(r => r.Error is { } e && RpcErrors.IsChunkFull(e));
        var ok = Judge(results, "append", ignoreChunkFull: true);
        if (ok && !full && wrongLength.Length == 0)
        {
            Length += size;
            return ChunkAppendOutcome.Acknowledged;
        }
        if (wrongLength.Length > 0)
        {
            logger.LogWarning("chunk {ChunkId} of {Path}: replicas {Servers} report a length other than {Expected}", Id, path, string.Join(",", wrongLength), expected);
            FailedServers = FailedServers.Concat(wrongLength).Distinct().ToArray();
            return ChunkAppendOutcome.ReplicaFailed;
        }
        if (ok && full)
        {
            MaxLength = Length;
            return ChunkAppendOutcome.ChunkFull;
        }
        return ChunkAppendOutcome.ReplicaFailed;
    }

    /// <summary>Forgets the appends in flight after a failure: what was not acknowledged is sent again elsewhere.</summary>
    public void Rewind() => SentLength = Length;

    public async Task<ChunkAppendOutcome> AppendAsync(ReadOnlyMemory<byte> data, bool fua, CancellationToken ct)
    {
        Rewind();
        var results = await Send(data, fua).WaitAsync(ct);
        var outcome = Complete(results, data.Length);
        Rewind();
        return outcome;
    }

    public async Task<bool> SyncAsync(CancellationToken ct)
    {
        var results = await fanOut.CallAsync(Replicas, (c, o) => c.SyncAsync(new SyncRequest { ChunkId = Id }, o).ResponseAsync, ct);
        return Judge(results, "sync");
    }

    /// <summary>
    /// Seals every replica that answers at the acknowledged length (truncating replicas that got further).
    /// A replica makes its data durable before it records the seal, so no separate sync goes first.
    /// Returns how many replicas are sealed.
    /// </summary>
    public async Task<int> SealAsync(CancellationToken ct)
    {
        var results = await fanOut.CallAsync(Replicas, (c, o) => c.SealAsync(new SealRequest { ChunkId = Id, Epoch = epoch, Length = (ulong)Length }, o).ResponseAsync, ct);
        // The seal refused whatever the replicas still held for this chunk; the streams have nothing left to carry.
        await CloseStreamsAsync();
        Judge(results, "seal");
        return results.Count(r => r.Ok);
    }

    /// <summary>True when every replica succeeded. Throws <see cref="FencedException"/> on a stale epoch.</summary>
    private bool Judge<T>(IReadOnlyList<ReplicaResult<T>> results, string operation, bool ignoreChunkFull = false)
    {
        var stale = results.FirstOrDefault(r => r.Error is { } e && RpcErrors.IsStaleEpoch(e));
        if (stale is not null)
        {
            throw new FencedException(path, epoch, stale.Error);
        }
        var failed = results.Where(r => r.Error is { } e && !(ignoreChunkFull && RpcErrors.IsChunkFull(e))).ToArray();
        foreach (var f in failed)
        {
            logger.LogWarning("{Operation} of chunk {ChunkId} ({Path}) at {Offset} failed on {Server} ({Address}): {Code} {Reason} {Detail}",
                operation, Id, path, Length, f.Replica.ChunkServerId, f.Replica.Address, f.Error!.StatusCode, FeitianStatus.ReasonOf(f.Error), f.Error.Status.Detail);
        }
        FailedServers = failed.Select(f => f.Replica.ChunkServerId).ToArray();
        return failed.Length == 0;
    }
}
