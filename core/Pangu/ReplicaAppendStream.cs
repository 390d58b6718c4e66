using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The AppendStream of one open chunk to one replica (over an <see cref="IAppendStreamTransport"/>: the framed
/// protocol or the gRPC call): a header (chunk, epoch), then one frame per append. Answers come back in landing order and are matched to frames by offset. A frame not answered
/// within the chunk-server timeout, or a stream that breaks, fails every frame still waiting (the appender
/// then seals at the acknowledged prefix, as after a failed unary append). Sends are called from one
/// writer at a time; the payload must stay untouched until the frame's task completes.
/// </summary>
internal sealed class ReplicaAppendStream : IAsyncDisposable
{
    private readonly IAppendStreamTransport _transport;
    private readonly Dictionary<ulong, TaskCompletionSource<AppendResponse>> _waiting = [];
    private readonly TimeSpan _timeout;
    private readonly Task _reading;
    private Task _lastWrite;
    private RpcException? _broken;

    /// <param name="dropBehind">The header's drop-behind hint: this client reads the chunk from another replica.</param>
    public ReplicaAppendStream(IAppendStreamTransport transport, ulong chunkId, ulong epoch, TimeSpan timeout, bool dropBehind = false)
    {
        _timeout = timeout;
        _transport = transport;
        _lastWrite = WriteAsync(Task.CompletedTask, new AppendStreamRequest
        {
            Header = new AppendStreamHeader { ChunkId = chunkId, Epoch = epoch, DropBehind = dropBehind },
        });
        _reading = ReadAnswersAsync();
    }

    /// <summary>Sends a frame and completes with its answer; a refusal is the RpcException a unary Append would throw.</summary>
    public async Task<AppendResponse> SendAsync(ulong offset, ReadOnlyMemory<byte> data, uint crc32c, bool fua)
    {
        // Completed by the answer-reading loop, which then runs the waiting appender on (no thread hop per
        // answer); everything after this await only awaits (never blocks), so the loop soon reads on.
        var answer = new TaskCompletionSource<AppendResponse>();
        lock (_waiting)
        {
            if (_broken is not null)
            {
                throw _broken;
            }
            if (!_waiting.TryAdd(offset, answer))
            {
                throw new InvalidOperationException($"append stream: a frame at offset {offset} is already waiting for its answer");
            }
        }
        var frame = new AppendStreamRequest
        {
            Frame = new AppendFrame { Offset = offset, Data = UnsafeByteOperations.UnsafeWrap(data), Crc32C = crc32c, Fua = fua },
        };
        var write = _lastWrite = WriteAsync(_lastWrite, frame);
        try
        {
            return await answer.Task.WaitAsync(_timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Break(new RpcException(new Status(StatusCode.DeadlineExceeded, $"append stream: no answer for the frame at offset {offset} within {_timeout.TotalSeconds:0} s")));
            return await answer.Task.ConfigureAwait(false);
        }
        finally
        {
            // The payload may be reused once this returns: the write that reads it must be over.
            await write.ConfigureAwait(false);
        }
    }

    /// <summary>Ends the stream: no more frames; the server answers what it holds, then the call ends.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await _lastWrite.WaitAsync(_timeout).ConfigureAwait(false);
            if (_broken is null)
            {
                await _transport.CompleteAsync().WaitAsync(_timeout).ConfigureAwait(false);
                await _reading.WaitAsync(_timeout).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException or TimeoutException or OperationCanceledException)
        {
            Break(new RpcException(new Status(StatusCode.Cancelled, $"append stream closed: {e.Message}")));
        }
        finally
        {
            _transport.Dispose();
        }
    }

    /// <summary>Writes after the previous write (gRPC allows one at a time); a failed write breaks the stream and never throws.</summary>
    private async Task WriteAsync(Task previous, AppendStreamRequest message)
    {
        await previous.ConfigureAwait(false);
        if (_broken is not null)
        {
            return;
        }
        try
        {
            await _transport.WriteAsync(message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            Break(e as RpcException ?? new RpcException(new Status(StatusCode.Unavailable, $"append stream write failed: {e.Message}")));
        }
    }

    private async Task ReadAnswersAsync()
    {
        try
        {
            while (await _transport.ReadAsync().ConfigureAwait(false) is { } response)
            {
                TaskCompletionSource<AppendResponse>? answer;
                lock (_waiting)
                {
                    _waiting.Remove(response.Offset, out answer);
                }
                if (answer is null)
                {
                    Break(new RpcException(new Status(StatusCode.Internal, $"append stream: answer for offset {response.Offset}, which no frame waits for")));
                    return;
                }
                if (response.Error is { } error)
                {
                    answer.TrySetException(ToRpcException(error));
                }
                else
                {
                    answer.TrySetResult(new AppendResponse { Length = response.Length });
                }
            }
            Break(new RpcException(new Status(StatusCode.Unavailable, "append stream ended by the chunk server")));
        }
        catch (RpcException e)
        {
            Break(e);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or OperationCanceledException)
        {
            Break(new RpcException(new Status(StatusCode.Unavailable, $"append stream broke: {e.Message}")));
        }
    }

    /// <summary>Fails every waiting frame and every later send with <paramref name="error"/>; the first error wins.</summary>
    private void Break(RpcException error)
    {
        TaskCompletionSource<AppendResponse>[] waiting;
        lock (_waiting)
        {
            _broken ??= error;
            waiting = [.. _waiting.Values];
            _waiting.Clear();
        }
        foreach (var answer in waiting)
        {
            answer.TrySetException(_broken);
        }
        _transport.Dispose(); // cancels the call if it still runs (a timeout, a bad answer), which also ends a write stuck on flow control
    }

    /// <summary>The RpcException a unary Append would have thrown for this refusal.</summary>
    internal static RpcException ToRpcException(AppendFrameError error)
    {
        var code = Enum.IsDefined((StatusCode)error.Code) ? (StatusCode)error.Code : StatusCode.Internal;
        return error.HasChunkLength
            ? FeitianStatus.Error(code, error.Reason, error.Detail, (FeitianStatus.ChunkLengthTrailer, error.ChunkLength.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            : FeitianStatus.Error(code, error.Reason, error.Detail);
    }
}
