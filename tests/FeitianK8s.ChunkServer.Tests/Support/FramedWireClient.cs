using System.Buffers.Binary;
using System.Net.Sockets;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.ChunkServer.Tests.Support;

/// <summary>One message of the framed append protocol as read off the wire: its kind byte and body.</summary>
public sealed record WireMessage(byte Kind, byte[] Body);

/// <summary>
/// A raw client of the framed append protocol (<see cref="AppendStreamWire"/>) on a plain TCP socket to a chunk
/// server's gRPC port (no TLS): it writes exactly the bytes a test gives it, so a test can also send what the
/// production client never would, and reads the server's messages one by one.
/// </summary>
public sealed class FramedWireClient : IAsyncDisposable
{
    /// <summary>Generous: a read that waits this long means the server neither answered nor closed.</summary>
    public static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private FramedWireClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>A TCP connection to the gRPC port of <paramref name="grpcAddress"/> (http://host:port); nothing sent yet.</summary>
    public static async Task<FramedWireClient> ConnectAsync(string grpcAddress)
    {
        var uri = new Uri(grpcAddress);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = new CancellationTokenSource(ReadTimeout);
            await socket.ConnectAsync(uri.Host, uri.Port, timeout.Token);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new FramedWireClient(socket);
    }

    /// <summary>Connects, sends the preface and waits for the server's Ready, as every framed stream starts.</summary>
    public static async Task<FramedWireClient> OpenAsync(string grpcAddress)
    {
        var client = await ConnectAsync(grpcAddress);
        try
        {
            await client.SendRawAsync(AppendStreamWire.Preface.ToArray());
            var ready = await client.ReadAsync();
            Assert.True(ready is not null, "the server closed the connection instead of answering the preface");
            Assert.Equal(AppendStreamWire.Ready, ready.Kind);
            Assert.Empty(ready.Body);
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>One message's bytes: kind, 4-byte big-endian body length, body.</summary>
    public static byte[] Encode(byte kind, IMessage? body)
    {
        var bytes = body?.ToByteArray() ?? [];
        return Encode(kind, bytes);
    }

    public static byte[] Encode(byte kind, ReadOnlySpan<byte> body)
    {
        var message = new byte[AppendStreamWire.HeaderBytes + body.Length];
        message[0] = kind;
        BinaryPrimitives.WriteInt32BigEndian(message.AsSpan(1), body.Length);
        body.CopyTo(message.AsSpan(AppendStreamWire.HeaderBytes));
        return message;
    }

    public static byte[] Request(AppendStreamRequest request) => Encode(AppendStreamWire.Request, request);

    public static byte[] Header(ulong chunkId, ulong epoch, bool dropBehind = false) =>
        Request(new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = chunkId, Epoch = epoch, DropBehind = dropBehind } });

    public static byte[] Frame(AppendFrame frame) => Request(new AppendStreamRequest { Frame = frame });

    public static byte[] Frame(ulong offset, byte[] data) =>
        Frame(new AppendFrame { Offset = offset, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) });

    /// <summary>A frame as the production client sends it: the codec's head, then the payload (<see cref="AppendFrameCodec"/>).</summary>
    public static byte[] FrameAsSent(ulong offset, byte[] data)
    {
        var head = new byte[AppendFrameCodec.MaxHeadBytes];
        var length = AppendFrameCodec.WriteHead(new AppendFrame { Offset = offset, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) }, head);
        return [.. head.AsSpan(0, length), .. data];
    }

    public static byte[] End() => Encode(AppendStreamWire.End, ReadOnlySpan<byte>.Empty);

    /// <summary>Writes <paramref name="bytes"/> in one write call (small enough, one TCP segment on loopback).</summary>
    public async Task SendRawAsync(ReadOnlyMemory<byte> bytes) => await _stream.WriteAsync(bytes);

    /// <summary>
    /// The next whole message, or null when the server closed (or reset) the connection between messages.
    /// A connection that ends inside a message fails the test.
    /// </summary>
    public async Task<WireMessage?> ReadAsync()
    {
        using var timeout = new CancellationTokenSource(ReadTimeout);
        var header = new byte[AppendStreamWire.HeaderBytes];
        try
        {
            if (await _stream.ReadAsync(header.AsMemory(0, 1), timeout.Token) == 0)
            {
                return null;
            }
        }
        catch (IOException error) when (error.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            return null;
        }
        await _stream.ReadExactlyAsync(header.AsMemory(1), timeout.Token);
        var length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1));
        Assert.InRange(length, 0, 64 << 20);
        var body = new byte[length];
        await _stream.ReadExactlyAsync(body, timeout.Token);
        return new WireMessage(header[0], body);
    }

    /// <summary>Everything the server sends until it closes the connection (a test that expects no message asserts it is empty).</summary>
    public async Task<byte[]> ReadToCloseAsync()
    {
        using var timeout = new CancellationTokenSource(ReadTimeout);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await _stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                received.Write(buffer, 0, read);
            }
        }
        catch (IOException error) when (error.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            // A reset closes the connection too.
        }
        return received.ToArray();
    }

    /// <summary>The next answer to a frame; a Status message instead fails the read with the call's RpcException.</summary>
    public async Task<AppendStreamResponse> ReadAnswerAsync()
    {
        var message = await ReadAsync();
        Assert.True(message is not null, "the server closed the connection instead of answering a frame");
        if (message.Kind == AppendStreamWire.Status)
        {
            var status = AppendFrameError.Parser.ParseFrom(message.Body);
            throw status.Code == 0
                ? new InvalidOperationException("the stream ended cleanly before every frame was answered")
                : ToRpcException(status);
        }
        Assert.Equal(AppendStreamWire.Answer, message.Kind);
        return AppendStreamResponse.Parser.ParseFrom(message.Body);
    }

    /// <summary>Reads answers up to the stream's last message, its Status, and checks the server then closes.</summary>
    public async Task<(List<AppendStreamResponse> Answers, AppendFrameError Status)> ReadToStatusAsync()
    {
        var answers = new List<AppendStreamResponse>();
        while (true)
        {
            var message = await ReadAsync();
            Assert.True(message is not null, $"the server closed the connection after {answers.Count} answers without a status");
            switch (message.Kind)
            {
                case AppendStreamWire.Answer:
                    answers.Add(AppendStreamResponse.Parser.ParseFrom(message.Body));
                    break;
                case AppendStreamWire.Status:
                    var status = AppendFrameError.Parser.ParseFrom(message.Body);
                    Assert.Empty(await ReadToCloseAsync());
                    return (answers, status);
                default:
                    Assert.Fail($"the server sent message kind {message.Kind} in the middle of a stream");
                    break;
            }
        }
    }

    /// <summary>The RpcException the gRPC AppendStream call would have ended with, for a non-zero Status.</summary>
    public static RpcException ToRpcException(AppendFrameError status) =>
        status.HasChunkLength
            ? FeitianStatus.Error((StatusCode)status.Code, status.Reason, status.Detail,
                (FeitianStatus.ChunkLengthTrailer, status.ChunkLength.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            : FeitianStatus.Error((StatusCode)status.Code, status.Reason, status.Detail);

    /// <summary>Closes the connection at once, without End (a reset: unread bytes are dropped), as a client that goes away.</summary>
    public void Abort()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _stream.Dispose();
    }

    /// <summary>Closes the sending side only (a FIN): the server reads the end of the stream and can still answer.</summary>
    public void CloseSending() => _socket.Shutdown(SocketShutdown.Send);

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}
