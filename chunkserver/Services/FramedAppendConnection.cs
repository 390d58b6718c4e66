using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>
/// The server side of one framed append connection (<see cref="AppendStreamWire"/>) as the request reader
/// and answer writer an <see cref="AppendStreamSession"/> runs on, so the framed protocol and the gRPC
/// AppendStream call share every rule. Bytes that break the protocol end the stream as InvalidArgument.
/// A frame's payload is copied once, from the connection's buffers into a pooled array (<see cref="AppendFrameCodec"/>),
/// which goes back to the pool when the session releases the frame. Given the TLS stream the pipe reads from
/// (<paramref name="decrypted"/>), the part of a large payload not yet buffered is read from that stream straight into
/// the pooled array instead, which saves a copy per byte: the pipe reads from the stream only when asked, and it
/// has nothing buffered once the frame's head and the payload's first bytes are consumed.
/// </summary>
internal sealed class FramedAppendConnection(IDuplexPipe transport, int maxBodyBytes, Stream? decrypted = null)
    : IAsyncStreamReader<AppendStreamRequest>, IServerStreamWriter<AppendStreamResponse>, IFramePayloadOwner
{
    /// <summary>Payload bytes still on the wire from which a frame is read from <c>decrypted</c> directly.</summary>
    internal const int DirectReadBytes = 64 << 10;

    private readonly ConcurrentDictionary<AppendFrame, byte[]> _pooled = new(ReferenceEqualityComparer.Instance);

    public AppendStreamRequest Current { get; private set; } = null!;

    public WriteOptions? WriteOptions { get; set; }

    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        var input = transport.Input;
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var taken = false;
            AppendFrameCodec.FrameHead head = default;
            var direct = false;
            try
            {
                if (AppendStreamWire.TryRead(ref buffer, maxBodyBytes, out var kind, out var body))
                {
                    taken = true;
                    switch (kind)
                    {
                        case AppendStreamWire.Request:
                            Current = AppendFrameCodec.TryDecode(body, out var frame) ? Pooled(frame) : AppendStreamRequest.Parser.ParseFrom(body);
                            return true;
                        case AppendStreamWire.End:
                            return false;
                        default:
                            throw new ChunkStoreException(ChunkError.InvalidArgument, $"framed append: unknown message kind {kind} from the client");
                    }
                }
                direct = decrypted is not null && !result.IsCompleted && AppendFrameCodec.TryDecodeHead(buffer, maxBodyBytes, out head)
                    && head.DataLength - (buffer.Length - head.Bytes) >= DirectReadBytes;
            }
            catch (AppendWireException error)
            {
                throw new ChunkStoreException(ChunkError.InvalidArgument, $"framed append: {error.Message}");
            }
            catch (InvalidProtocolBufferException error)
            {
                throw new ChunkStoreException(ChunkError.InvalidArgument, $"framed append: malformed AppendStreamRequest: {error.Message}");
            }
            finally
            {
                // A message taken is consumed (a next one already read is returned at once); without a whole
                // message, everything is examined so the next read waits for more bytes (or, for a frame read
                // directly, consumed: its head and first payload bytes are copied out below before anything else).
                if (taken)
                {
                    input.AdvanceTo(buffer.Start);
                }
                else if (!direct)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
            }
            if (direct)
            {
                Current = await ReadDirectAsync(input, buffer, head, cancellationToken).ConfigureAwait(false);
                return true;
            }
            if (result.IsCompleted || result.IsCanceled)
            {
                throw new IOException("the client closed the connection without ending the stream");
            }
        }
    }

    /// <summary>
    /// A frame whose payload is mostly still on the wire: the buffered part is copied into a pooled array, the pipe
    /// gives back everything it read (so it holds nothing), and the rest comes from the TLS stream.
    /// </summary>
    private async Task<AppendStreamRequest> ReadDirectAsync(PipeReader input, ReadOnlySequence<byte> buffered, AppendFrameCodec.FrameHead head, CancellationToken ct)
    {
        var payload = ArrayPool<byte>.Shared.Rent(head.DataLength);
        var first = buffered.Slice(head.Bytes);
        first.CopyTo(payload);
        input.AdvanceTo(buffered.End);
        try
        {
            await decrypted!.ReadExactlyAsync(payload.AsMemory((int)first.Length, head.DataLength - (int)first.Length), ct).ConfigureAwait(false);
        }
        catch (EndOfStreamException error)
        {
            ArrayPool<byte>.Shared.Return(payload);
            throw new IOException("the client closed the connection inside a frame", error);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(payload);
            throw;
        }
        return Owning(new AppendFrame { Offset = head.Offset, Crc32C = head.Crc32C, Fua = head.Fua }, payload, head.DataLength);
    }

    /// <summary>Gives a frame's pooled payload back; the frame's data must not be read afterwards.</summary>
    public void Release(AppendFrame frame)
    {
        if (_pooled.TryRemove(frame, out var payload))
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }

    private AppendStreamRequest Pooled(AppendFrameCodec.DecodedFrame decoded)
    {
        var frame = new AppendFrame { Offset = decoded.Offset, Crc32C = decoded.Crc32C, Fua = decoded.Fua };
        if (decoded.Data.Length == 0)
        {
            return new AppendStreamRequest { Frame = frame };
        }
        var length = (int)decoded.Data.Length;
        var payload = ArrayPool<byte>.Shared.Rent(length);
        decoded.Data.CopyTo(payload);
        return Owning(frame, payload, length);
    }

    /// <summary>The frame with its first <paramref name="length"/> bytes of <paramref name="payload"/> as data, kept until <see cref="Release"/>.</summary>
    private AppendStreamRequest Owning(AppendFrame frame, byte[] payload, int length)
    {
        frame.Data = UnsafeByteOperations.UnsafeWrap(payload.AsMemory(0, length));
        _pooled[frame] = payload;
        return new AppendStreamRequest { Frame = frame };
    }

    public Task WriteAsync(AppendStreamResponse message) => SendAsync(AppendStreamWire.Answer, message);

    public Task WriteReadyAsync() => SendAsync(AppendStreamWire.Ready, null);

    /// <summary>The stream's last message: code 0 (OK) or the refusal, as the gRPC call would have ended.</summary>
    public Task WriteStatusAsync(AppendFrameError status) => SendAsync(AppendStreamWire.Status, status);

    private async Task SendAsync(byte kind, IMessage? body)
    {
        AppendStreamWire.Write(transport.Output, kind, body);
        var flushed = await transport.Output.FlushAsync().ConfigureAwait(false);
        if (flushed.IsCompleted || flushed.IsCanceled)
        {
            throw new IOException("the client is gone: the answer was not delivered");
        }
    }
}
