using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.ChunkServer.Tests.Support;

/// <summary>The two ways a client carries an append stream to a chunk server's gRPC port.</summary>
public enum AppendTransport
{
    /// <summary>The AppendStream gRPC call (HTTP/2).</summary>
    Grpc,

    /// <summary>The framed append protocol: the same messages without HTTP/2.</summary>
    Framed,
}

/// <summary>One append stream with its header sent, over either transport; answers are read as they come.</summary>
public abstract class AppendTestStream : IAsyncDisposable
{
    public static async Task<AppendTestStream> OpenAsync(AppendTransport transport, ChunkServerUnderTest server, ulong chunkId, ulong epoch,
        bool dropBehind = false) =>
        transport switch
        {
            AppendTransport.Grpc => new GrpcAppendTestStream(server, chunkId, epoch, dropBehind),
            _ => await FramedAppendTestStream.OpenAsync(server, chunkId, epoch, dropBehind),
        };

    /// <summary>Sends the messages on one stream, ends it and reads every answer, throwing the call's RpcException if it fails.</summary>
    public static Task RunAsync(AppendTransport transport, ChunkServerUnderTest server, params AppendStreamRequest[] messages) =>
        transport switch
        {
            AppendTransport.Grpc => GrpcAppendTestStream.RunAsync(server, messages),
            _ => FramedAppendTestStream.RunAsync(server, messages),
        };

    public Task SendAsync(ulong offset, byte[] data) =>
        SendFrameAsync(new AppendFrame { Offset = offset, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) });

    public abstract Task SendFrameAsync(AppendFrame frame);

    public abstract Task<List<AppendStreamResponse>> AnswersAsync(int count);

    /// <summary>Goes away without ending the stream, as a client that crashes or gives up does.</summary>
    public abstract void Reset();

    /// <summary>Ends the stream, reads the answers left and its status (throwing if it did not end cleanly).</summary>
    public abstract ValueTask DisposeAsync();
}

/// <summary>An AppendStream gRPC call.</summary>
internal sealed class GrpcAppendTestStream : AppendTestStream
{
    private readonly AsyncDuplexStreamingCall<AppendStreamRequest, AppendStreamResponse> _call;
    private readonly Task _headerSent;
    private bool _reset;

    public GrpcAppendTestStream(ChunkServerUnderTest server, ulong chunkId, ulong epoch, bool dropBehind)
    {
        _call = server.Client.AppendStream(deadline: DateTime.UtcNow.AddMinutes(2));
        _headerSent = _call.RequestStream.WriteAsync(new AppendStreamRequest
        {
            Header = new AppendStreamHeader { ChunkId = chunkId, Epoch = epoch, DropBehind = dropBehind },
        });
    }

    public static async Task RunAsync(ChunkServerUnderTest server, AppendStreamRequest[] messages)
    {
        using var call = server.Client.AppendStream(deadline: DateTime.UtcNow.AddMinutes(1));
        try
        {
            foreach (var message in messages)
            {
                await call.RequestStream.WriteAsync(message);
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (RpcException)
        {
            // The server ended the call early; its status is read below.
        }
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
        }
    }

    public override async Task SendFrameAsync(AppendFrame frame)
    {
        await _headerSent;
        await _call.RequestStream.WriteAsync(new AppendStreamRequest { Frame = frame });
    }

    public override async Task<List<AppendStreamResponse>> AnswersAsync(int count)
    {
        var answers = new List<AppendStreamResponse>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        while (answers.Count < count)
        {
            Assert.True(await _call.ResponseStream.MoveNext(timeout.Token), $"stream ended after {answers.Count} of {count} answers");
            answers.Add(_call.ResponseStream.Current);
        }
        return answers;
    }

    /// <summary>Cancels the call (HTTP/2 RST_STREAM).</summary>
    public override void Reset()
    {
        _reset = true;
        _call.Dispose();
    }

    public override async ValueTask DisposeAsync()
    {
        if (!_reset)
        {
            await _call.RequestStream.CompleteAsync();
            while (await _call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        }
        _call.Dispose();
    }
}

/// <summary>A framed append stream on its own connection, through <see cref="FramedWireClient"/>.</summary>
internal sealed class FramedAppendTestStream : AppendTestStream
{
    private readonly FramedWireClient _wire;
    private bool _reset;

    private FramedAppendTestStream(FramedWireClient wire) => _wire = wire;

    public static async Task<FramedAppendTestStream> OpenAsync(ChunkServerUnderTest server, ulong chunkId, ulong epoch, bool dropBehind)
    {
        var wire = await FramedWireClient.OpenAsync(server.Host.GrpcAddress);
        await wire.SendRawAsync(FramedWireClient.Header(chunkId, epoch, dropBehind));
        return new FramedAppendTestStream(wire);
    }

    public static async Task RunAsync(ChunkServerUnderTest server, AppendStreamRequest[] messages)
    {
        await using var wire = await FramedWireClient.OpenAsync(server.Host.GrpcAddress);
        // One write: the server has every byte before it can end the stream early, so its close is never a reset.
        await wire.SendRawAsync(messages.Select(FramedWireClient.Request).Append(FramedWireClient.End()).SelectMany(m => m).ToArray());
        var (_, status) = await wire.ReadToStatusAsync();
        if (status.Code != 0)
        {
            throw FramedWireClient.ToRpcException(status);
        }
    }

    public override Task SendFrameAsync(AppendFrame frame) => _wire.SendRawAsync(FramedWireClient.Frame(frame));

    public override async Task<List<AppendStreamResponse>> AnswersAsync(int count)
    {
        var answers = new List<AppendStreamResponse>();
        while (answers.Count < count)
        {
            answers.Add(await _wire.ReadAnswerAsync());
        }
        return answers;
    }

    /// <summary>Aborts the connection without End.</summary>
    public override void Reset()
    {
        _reset = true;
        _wire.Abort();
    }

    public override async ValueTask DisposeAsync()
    {
        if (!_reset)
        {
            await _wire.SendRawAsync(FramedWireClient.End());
            var (_, status) = await _wire.ReadToStatusAsync();
            if (status.Code != 0)
            {
                throw FramedWireClient.ToRpcException(status);
            }
        }
        await _wire.DisposeAsync();
    }
}
