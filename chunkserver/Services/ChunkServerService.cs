using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Replication;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using ChunkServerBase = FeitianK8s.Proto.ChunkServer.ChunkServer.ChunkServerBase;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>The ChunkServer gRPC service: parse, call the store, shape the reply. Errors are mapped by <see cref="ChunkServerInterceptor"/>.</summary>
public sealed class ChunkServerService(ChunkStore store, PeerChunkCopier copier, ChunkServerMetrics metrics, RebuildBudget rebuild, ILogger<ChunkServerService> log) : ChunkServerBase
{
    public override Task<CreateChunkResponse> CreateChunk(CreateChunkRequest request, ServerCallContext context)
    {
        store.Create(request.ChunkId, request.Epoch, request.MaxLength);
        return Task.FromResult(new CreateChunkResponse());
    }

    public override async Task<AppendResponse> Append(AppendRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var length = await store.AppendAsync(request.ChunkId, request.Epoch, request.ExpectedOffset, request.Data.Memory, request.Crc32C, request.Fua);
        rebuild.Adaptive.Observe(Stopwatch.GetElapsedTime(started));
        metrics.AppendedBytes.Inc(request.Data.Length);
        return new AppendResponse { Length = (ulong)length };
    }

    public override Task AppendStream(IAsyncStreamReader<AppendStreamRequest> requestStream, IServerStreamWriter<AppendStreamResponse> responseStream,
        ServerCallContext context) =>
        new AppendStreamSession(store, metrics, rebuild, responseStream, log).RunAsync(requestStream, context.CancellationToken);

    public override async Task<ReadResponse> Read(ReadRequest request, ServerCallContext context)
    {
        var started = Stopwatch.GetTimestamp();
        var result = await store.ReadAsync(request.ChunkId, request.Offset, request.Length);
        if (context.RequestHeaders.GetValue(PeerChunkCopier.RebuildHeader) is null)
        {
            rebuild.Adaptive.Observe(Stopwatch.GetElapsedTime(started));
        }
        metrics.ReadBytes.Inc(result.Data.Length);
        return new ReadResponse
        {
            Data = UnsafeByteOperations.UnsafeWrap(result.Data),
            Crc32C = Crc32C.Compute(result.Data.Span),
            ChunkLength = (ulong)result.ChunkLength,
            Sealed = result.Sealed,
        };
    }

    public override async Task<SyncResponse> Sync(SyncRequest request, ServerCallContext context) =>
        new() { Length = (ulong)await store.SyncAsync(request.ChunkId) };

    public override async Task<SealResponse> Seal(SealRequest request, ServerCallContext context) =>
        new()
        {
            Length = (ulong)(request.AtCurrentLength
                ? await store.SealAtCurrentLengthAsync(request.ChunkId, request.Epoch)
                : await store.SealAsync(request.ChunkId, request.Epoch, request.Length)),
        };

    public override async Task<DeleteChunkResponse> DeleteChunk(DeleteChunkRequest request, ServerCallContext context)
    {
        await store.DeleteAsync(request.ChunkId);
        return new DeleteChunkResponse();
    }

    public override async Task<ChunkInfo> GetChunkInfo(GetChunkInfoRequest request, ServerCallContext context)
    {
        var state = request.FenceEpoch > 0 ? await store.FenceAsync(request.ChunkId, request.FenceEpoch) : await store.InfoAsync(request.ChunkId);
        return new ChunkInfo { ChunkId = state.Id, Length = (ulong)state.Length, Sealed = state.Sealed, Epoch = state.Epoch };
    }

    public override async Task<CopyChunkFromPeerResponse> CopyChunkFromPeer(CopyChunkFromPeerRequest request, ServerCallContext context)
    {
        if (string.IsNullOrWhiteSpace(request.SourceAddress))
        {
            throw new ChunkStoreException(ChunkError.InvalidArgument, $"chunk {request.ChunkId}: copy needs a source address");
        }
        (ChunkState State, uint Crc32C) state;
        try
        {
            state = await copier.CopyAsync(request.ChunkId, request.SourceAddress, request.Epoch, request.Length, context.CancellationToken);
        }
        catch (ArgumentException error)
        {
            throw new ChunkStoreException(ChunkError.InvalidArgument, $"chunk {request.ChunkId}: {error.Message}");
        }
        return new CopyChunkFromPeerResponse { Length = (ulong)state.State.Length, Crc32C = state.Crc32C };
    }
}
