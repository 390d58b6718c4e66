using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Replication;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>
/// One AppendStream call: a header naming the chunk and epoch, then frames applied by the same
/// <see cref="ChunkStore.AppendAsync"/> as a unary Append (so the hold / in-order / gap / epoch / seal
/// rules are shared). A frame at the chunk's length is applied inline, in arrival order; an early one is
/// held on its own task while later frames keep coming, and dropped if the stream ends before it can land.
/// Every frame gets one answer, in landing order.
/// </summary>
internal sealed class AppendStreamSession(
    ChunkStore store, ChunkServerMetrics metrics, RebuildBudget rebuild, IServerStreamWriter<AppendStreamResponse> responses, ILogger log)
{
    /// <summary>
    /// Frames of one stream being applied or held at once (a writer keeps 8 in flight); the reader waits beyond
    /// that, which bounds what one stream can make the server hold to 32 frames of at most the max I/O size.
    /// </summary>
    public const int MaxFramesInFlight = 32;

    private readonly SemaphoreSlim _window = new(MaxFramesInFlight, MaxFramesInFlight);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private ChunkStoreException? _fenced;
    private ulong _chunkId;
    private ulong _epoch;
    private IFramePayloadOwner? _payloads;

    public async Task RunAsync(IAsyncStreamReader<AppendStreamRequest> requests, CancellationToken ct)
    {
        if (!await requests.MoveNext(ct).ConfigureAwait(false))
        {
            return;
        }
        if (requests.Current.KindCase != AppendStreamRequest.KindOneofCase.Header)
        {
            throw new ChunkStoreException(ChunkError.InvalidArgument, "append stream: the first message must be a header naming the chunk and epoch");
        }
        _payloads = requests as IFramePayloadOwner;
        _chunkId = requests.Current.Header.ChunkId;
        _epoch = requests.Current.Header.Epoch;
        var state = await store.InfoAsync(_chunkId).ConfigureAwait(false);
        if (_epoch < state.Epoch)
        {
            throw new ChunkStoreException(ChunkError.StaleEpoch, $"chunk {_chunkId}: append stream with epoch {_epoch} refused, chunk epoch is {state.Epoch}", state.Length);
        }
        store.SetDropBehind(_chunkId, requests.Current.Header.DropBehind);
        var running = new List<Task>();
        // Cancelled when the stream ends early (reset by the client, a protocol error): held frames are then dropped.
        using var gone = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            while (await NextAsync(requests, ct).ConfigureAwait(false))
            {
                var message = requests.Current;
                if (message.KindCase != AppendStreamRequest.KindOneofCase.Frame)
                {
                    throw new ChunkStoreException(ChunkError.InvalidArgument,
                        $"chunk {_chunkId}: append stream carries a {message.KindCase} message after its header; only frames may follow");
                }
                await _window.WaitAsync(ct).ConfigureAwait(false);
                var frame = ApplyAsync(message.Frame, gone.Token);
                if (!frame.IsCompleted)
                {
                    running.RemoveAll(t => t.IsCompleted);
                    running.Add(frame);
                }
            }
        }
        catch
        {
            await gone.CancelAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            // Answers may be written only while the call lasts: wait for the held frames (a gap times out, a seal wakes them).
            await Task.WhenAll(running).ConfigureAwait(false);
        }
    }

    /// <summary>The next message; a stream the client reset reads as Cancelled, not as a server fault.</summary>
    private static async Task<bool> NextAsync(IAsyncStreamReader<AppendStreamRequest> requests, CancellationToken ct)
    {
        try
        {
            return await requests.MoveNext(ct).ConfigureAwait(false);
        }
        catch (IOException error)
        {
            throw FeitianStatus.Error(StatusCode.Cancelled, "cancelled", $"append stream reset by the client: {error.Message}");
        }
    }

    private async Task ApplyAsync(AppendFrame frame, CancellationToken ct)
    {
        AppendStreamResponse answer;
        try
        {
            answer = new AppendStreamResponse { Offset = frame.Offset, Length = (ulong)await AppendAsync(frame, ct).ConfigureAwait(false) };
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The stream went away while the frame was held: it is dropped, nothing of it applied.
            log.LogDebug("AppendStream frame at {Offset} of chunk {ChunkId} dropped: the stream ended while it was held", frame.Offset, _chunkId);
            answer = new AppendStreamResponse
            {
                Offset = frame.Offset,
                Error = new AppendFrameError { Code = (int)StatusCode.Cancelled, Reason = "cancelled", Detail = "the stream ended while the frame was held" },
            };
        }
        catch (ChunkStoreException error)
        {
            if (error.Error == ChunkError.StaleEpoch)
            {
                _fenced ??= error;
            }
            log.Log(error.Error is ChunkError.Corrupt or ChunkError.IoError ? LogLevel.Error : LogLevel.Debug, error.InnerException,
                "AppendStream frame at {Offset} of chunk {ChunkId} refused ({Error}): {Message}", frame.Offset, _chunkId, error.Error, error.Message);
            answer = new AppendStreamResponse { Offset = frame.Offset, Error = ToFrameError(error) };
        }
        catch (Exception error)
        {
            log.LogCritical(error, "AppendStream frame at {Offset} of chunk {ChunkId} failed unexpectedly", frame.Offset, _chunkId);
            answer = new AppendStreamResponse
            {
                Offset = frame.Offset,
                Error = new AppendFrameError { Code = (int)StatusCode.Internal, Reason = ChunkErrorMapping.IoErrorReason, Detail = $"append failed: {error.Message}" },
            };
        }
        finally
        {
            _payloads?.Release(frame);
            _window.Release();
        }
        metrics.Requests.WithLabels("AppendStreamFrame", answer.Error is null ? "ok" : answer.Error.Reason).Inc();
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await responses.WriteAsync(answer).ConfigureAwait(false);
        }
        catch (Exception error) when (error is InvalidOperationException or IOException or OperationCanceledException or RpcException)
        {
            // The caller went away; the frame's outcome stands on disk and a reader finds it by length.
            log.LogDebug(error, "AppendStream answer for offset {Offset} of chunk {ChunkId} not delivered", frame.Offset, _chunkId);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task<long> AppendAsync(AppendFrame frame, CancellationToken ct)
    {
        if (_fenced is { } fenced)
        {
            throw new ChunkStoreException(ChunkError.StaleEpoch, $"chunk {_chunkId}: append stream with epoch {_epoch} was fenced earlier: {fenced.Message}", fenced.ChunkLength);
        }
        var started = Stopwatch.GetTimestamp();
        var length = await store.AppendAsync(_chunkId, _epoch, frame.Offset, frame.Data.Memory, frame.Crc32C, frame.Fua, ct).ConfigureAwait(false);
        rebuild.Adaptive.Observe(Stopwatch.GetElapsedTime(started));
        metrics.AppendedBytes.Inc(frame.Data.Length);
        return length;
    }

    /// <summary>A refusal as the stream carries it: the gRPC code and reason a unary call would end with, and the chunk length.</summary>
    internal static AppendFrameError ToFrameError(ChunkStoreException error)
    {
        var (code, reason) = ChunkErrorMapping.Of(error.Error);
        return new AppendFrameError
        {
            Code = (int)code,
            Reason = reason,
            Detail = error.Message,
            HasChunkLength = error.ChunkLength.HasValue,
            ChunkLength = (ulong)(error.ChunkLength ?? 0),
        };
    }
}
