using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Security;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// An AppendStream over the framed append protocol (<see cref="AppendStreamWire"/>): its own TCP connection
/// (mutual TLS with the cluster's certificates when on) to the chunk server's gRPC port, one message per write,
/// no HTTP/2 framing, flow control or per-message thread hand-offs. A server that does not answer the
/// preface with Ready (one that predates the protocol) fails the stream with Unimplemented, so the caller
/// can use the gRPC call instead. Nothing but the preface is written before Ready: a server that refuses the
/// preface closes the connection, and bytes it never read make that close a reset, which would otherwise race
/// its refusal and fail the frames as an unreachable replica.
/// </summary>
internal sealed class FramedAppendStreamTransport : IAppendStreamTransport
{
    private readonly string _address;
    private readonly int _maxBodyBytes;
    private readonly CancellationTokenSource _disposed = new();
    private readonly Task<Stream> _connected;
    private readonly TaskCompletionSource _readyOrFailed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PipeReader? _reader;
    private bool _ready;
    private bool _ended;

    public FramedAppendStreamTransport(string address, ComponentTls? tls, int maxBodyBytes)
    {
        _address = address;
        _maxBodyBytes = maxBodyBytes;
        _connected = ConnectAsync(address, tls, _disposed.Token);
    }

    /// <summary>Payloads from this size on are written from the caller's memory after their head; smaller ones are copied in with it (one write).</summary>
    internal const int DirectPayloadBytes = 32 << 10;

    public async Task WriteAsync(AppendStreamRequest message)
    {
        if (message.KindCase == AppendStreamRequest.KindOneofCase.Frame)
        {
            await WriteFrameAsync(message.Frame).ConfigureAwait(false);
            return;
        }
        var (buffer, length) = AppendStreamWire.Encode(AppendStreamWire.Request, message);
        try
        {
            await WriteRawAsync(buffer.AsMemory(0, length)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A frame without a protobuf copy of its payload (<see cref="AppendFrameCodec"/>).</summary>
    private async Task WriteFrameAsync(AppendFrame frame)
    {
        var data = frame.Data.Memory;
        var direct = data.Length >= DirectPayloadBytes;
        var buffer = ArrayPool<byte>.Shared.Rent(AppendFrameCodec.MaxHeadBytes + (direct ? 0 : data.Length));
        try
        {
            var length = AppendFrameCodec.WriteHead(frame, buffer);
            if (!direct)
            {
                data.Span.CopyTo(buffer.AsSpan(length));
                length += data.Length;
            }
            await WriteRawAsync(buffer.AsMemory(0, length)).ConfigureAwait(false);
            if (direct)
            {
                await WriteRawAsync(data).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public async Task CompleteAsync()
    {
        var end = new byte[AppendStreamWire.HeaderBytes];
        end[0] = AppendStreamWire.End;
        await WriteRawAsync(end).ConfigureAwait(false);
    }

    public async Task<AppendStreamResponse?> ReadAsync()
    {
        if (_ended)
        {
            return null;
        }
        try
        {
            _reader ??= PipeReader.Create(await _connected.ConfigureAwait(false), new StreamPipeReaderOptions(leaveOpen: true));
        }
        catch (Exception e)
        {
            throw Fail(e as RpcException ?? Translate(e));
        }
        try
        {
            while (true)
            {
                var result = await _reader.ReadAsync(_disposed.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                while (AppendStreamWire.TryRead(ref buffer, _maxBodyBytes, out var kind, out var body))
                {
                    var answer = Interpret(kind, body);
                    if (answer is not null || _ended)
                    {
                        _reader.AdvanceTo(buffer.Start);
                        return answer;
                    }
                }
                if (result.IsCompleted)
                {
                    throw _ready
                        ? Unavailable("the chunk server closed the connection without a status")
                        : NotFramed("closed the connection");
                }
                _reader.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        catch (IOException e) when (!_ready)
        {
            // Only the preface was sent: a server that cannot read it drops the connection, at times with a reset.
            throw Fail(NotFramed($"dropped the connection ({e.Message})"));
        }
        catch (Exception e)
        {
            throw Fail(e as RpcException ?? Translate(e));
        }
    }

    public void Dispose()
    {
        _disposed.Cancel();
        _readyOrFailed.TrySetException(new RpcException(new Status(StatusCode.Cancelled, $"framed append stream to {_address} closed")));
        _connected.ContinueWith(c => c.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>An answer, or null for Ready and for the clean end (then <see cref="_ended"/> is set).</summary>
    private AppendStreamResponse? Interpret(byte kind, ReadOnlySequence<byte> body)
    {
        if (!_ready)
        {
            switch (kind)
            {
                case AppendStreamWire.Ready:
                    _ready = true;
                    _readyOrFailed.TrySetResult();
                    return null;
                case AppendStreamWire.Status:
                    break;
                default:
                    throw NotFramed($"answered with message kind {kind}, not Ready");
            }
        }
        switch (kind)
        {
            case AppendStreamWire.Answer:
                return AppendStreamResponse.Parser.ParseFrom(body);
            case AppendStreamWire.Status:
                var status = AppendFrameError.Parser.ParseFrom(body);
                if (status.Code == 0)
                {
                    _ended = true;
                    return null;
                }
                throw ReplicaAppendStream.ToRpcException(status);
            default:
                throw new RpcException(new Status(StatusCode.Internal, $"chunk server {_address} sent an unknown framed append message kind {kind}"));
        }
    }

    /// <summary>Writes once the server answered the preface with Ready (see the class comment); fails as the reading did otherwise.</summary>
    private async Task WriteRawAsync(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            var stream = await _connected.ConfigureAwait(false);
            await _readyOrFailed.Task.ConfigureAwait(false);
            await stream.WriteAsync(bytes, _disposed.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw Translate(e);
        }
    }

    private RpcException Translate(Exception e) => e switch
    {
        OperationCanceledException when _disposed.IsCancellationRequested => new RpcException(new Status(StatusCode.Cancelled, $"framed append stream to {_address} closed")),
        OperationCanceledException => Unavailable("no connection within the connect timeout"),
        AppendWireException or InvalidProtocolBufferException => new RpcException(new Status(StatusCode.Internal, $"chunk server {_address} broke the framed append protocol: {e.Message}")),
        _ => Unavailable(e.Message),
    };

    /// <summary>Records the first failure for writes still waiting for Ready, and returns it to throw.</summary>
    private RpcException Fail(RpcException error)
    {
        _readyOrFailed.TrySetException(error);
        return error;
    }

    private RpcException NotFramed(string what) =>
        new(new Status(StatusCode.Unimplemented, $"chunk server {_address} {what} instead of answering the framed append preface with Ready"));

    private RpcException Unavailable(string why) => new(new Status(StatusCode.Unavailable, $"framed append stream to {_address}: {why}"));

    /// <summary>TCP (within the gRPC connect timeout), TLS when on (within the TLS one), then the preface.</summary>
    private static async Task<Stream> ConnectAsync(string address, ComponentTls? tls, CancellationToken ct)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Port <= 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"chunk server address '{address}' is not a URL with a port"));
        }
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream stream;
        try
        {
            using var connect = CancellationTokenSource.CreateLinkedTokenSource(ct);
            connect.CancelAfter(GrpcChannels.ConnectTimeout);
            await socket.ConnectAsync(uri.Host, uri.Port, connect.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        try
        {
            if (tls is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                var options = tls.ClientOptions(ComponentTls.ServerRoles);
                options.TargetHost = uri.Host;
                using var handshake = CancellationTokenSource.CreateLinkedTokenSource(ct);
                handshake.CancelAfter(GrpcChannels.TlsConnectTimeout);
                await ssl.AuthenticateAsClientAsync(options, handshake.Token).ConfigureAwait(false);
            }
            await stream.WriteAsync(AppendStreamWire.Preface.ToArray(), ct).ConfigureAwait(false);
            return stream;
        }
        catch (Exception e)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            if (e is AuthenticationException)
            {
                throw new IOException($"TLS handshake with {address} failed: {e.Message}", e);
            }
            throw;
        }
    }
}
