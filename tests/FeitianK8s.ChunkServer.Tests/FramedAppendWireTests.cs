using System.Text;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// The framed append protocol's bytes on the wire, sent by a raw socket client (<see cref="FramedWireClient"/>) to
/// an in-process chunk server: hostile bytes end the stream with a clear status (or close the connection), change
/// no chunk and leave the port serving both framed streams and gRPC calls; many messages in one TCP segment are all
/// read; and a server with the protocol off never answers the preface with Ready.
/// </summary>
public sealed class FramedAppendWireTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _server = null!;

    public async Task InitializeAsync() =>
        _server = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("framed")));

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task A_message_declaring_a_body_over_the_limit_ends_the_stream_as_invalid_argument_and_changes_nothing()
    {
        // Kind Request with a body length of 2 GiB - 1: refused from the header alone, nothing of it is awaited.
        await AssertRefusedMidStreamAsync(chunkId: 1, [AppendStreamWire.Request, 0x7f, 0xff, 0xff, 0xff], "over the limit");
    }

    [Fact]
    public async Task A_message_of_an_unknown_kind_ends_the_stream_as_invalid_argument_and_changes_nothing()
    {
        await AssertRefusedMidStreamAsync(chunkId: 2, FramedWireClient.Encode(9, [1, 2, 3]), "unknown message kind 9");
    }

    [Fact]
    public async Task A_request_whose_body_is_not_protobuf_ends_the_stream_as_invalid_argument_and_changes_nothing()
    {
        // Field 2 (the frame), length-delimited, declares 16 bytes and carries 1.
        await AssertRefusedMidStreamAsync(chunkId: 3, FramedWireClient.Encode(AppendStreamWire.Request, [0x12, 0x10, 0x01]), "malformed AppendStreamRequest");
    }

    [Fact]
    public async Task Bytes_that_begin_like_the_preface_and_then_differ_are_closed_without_a_message()
    {
        await using (var wire = await FramedWireClient.ConnectAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync("FEITIAN-APPE"u8.ToArray());
            // Give the server the time to read the prefix and wait for the rest (not an assertion on timing).
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            await wire.SendRawAsync(Encoding.ASCII.GetBytes("X/1\r\n" + new string('x', 64)));
            Assert.Empty(await wire.ReadToCloseAsync());
        }
        await StillServesAsync(chunkId: 4, []);
    }

    [Fact]
    public async Task Bytes_that_begin_like_the_preface_and_differ_within_one_write_are_closed_without_a_message_too()
    {
        await using (var wire = await FramedWireClient.ConnectAsync(_server.Host.GrpcAddress))
        {
            // All in one segment: the outcome must not depend on where TCP splits the bytes (no HTTP/2 GOAWAY either).
            await wire.SendRawAsync(Encoding.ASCII.GetBytes("FEITIAN-APPEX/1\r\n" + new string('x', 64)));
            Assert.Empty(await wire.ReadToCloseAsync());
        }
        await StillServesAsync(chunkId: 10, []);
    }

    [Fact]
    public async Task A_connection_that_ends_inside_the_preface_is_closed_without_a_message()
    {
        await using (var wire = await FramedWireClient.ConnectAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync("FEITIAN-APP"u8.ToArray());
            wire.CloseSending();
            Assert.Empty(await wire.ReadToCloseAsync());
        }
        await StillServesAsync(chunkId: 5, []);
    }

    [Fact]
    public async Task A_connection_closed_in_the_middle_of_a_frame_message_leaves_the_chunk_unchanged_and_the_server_serving()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 6, Epoch = 1 });
        var first = RandomBytes(4096, 61);
        var cut = FramedWireClient.Frame(4096, RandomBytes(4096, 62));
        await using (var wire = await FramedWireClient.OpenAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync(FramedWireClient.Header(6, 1).Concat(FramedWireClient.Frame(0, first)).ToArray());
            Assert.Equal(4096ul, (await wire.ReadAnswerAsync()).Length);
            // The message header and half of the frame, then the client's side of the connection ends.
            await wire.SendRawAsync(cut.AsMemory(0, AppendStreamWire.HeaderBytes + ((cut.Length - AppendStreamWire.HeaderBytes) / 2)));
            wire.CloseSending();
            var (answers, status) = await wire.ReadToStatusAsync();
            Assert.Empty(answers);
            Assert.Equal((int)StatusCode.Cancelled, status.Code);
        }
        Assert.Equal(4096ul, (await _server.InfoAsync(6)).Length);
        Assert.Equal(first, await _server.ReadAllAsync(6));
        await StillServesAsync(chunkId: 6, first);
    }

    [Fact]
    public async Task Random_first_bytes_go_to_http2_which_closes_the_connection_and_the_server_keeps_serving()
    {
        var noise = RandomBytes(256, 71);
        noise[0] = 0; // neither the preface's first byte nor an HTTP method's
        await using (var wire = await FramedWireClient.ConnectAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync(noise);
            var received = await wire.ReadToCloseAsync();
            output.WriteLine($"HTTP/2 answered random bytes with {received.Length} bytes before closing: {Convert.ToHexString(received.AsSpan(0, Math.Min(received.Length, 32)))}");
            Assert.True(received.Length == 0 || received[0] != AppendStreamWire.Ready, "random bytes were answered with a framed Ready");
        }
        await StillServesAsync(chunkId: 7, []);
    }

    [Fact]
    public async Task Forty_frames_sent_back_to_back_in_one_write_are_all_answered_in_order_and_read_back_byte_identical()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 8, Epoch = 2 });
        // About 44 KiB in all: one write, and on loopback (MTU 64 KiB) one segment, so the server reads many messages at once.
        var pieces = Enumerable.Range(0, 40).Select(i => RandomBytes(600 + (i * 31), 800 + i)).ToArray();
        var offsets = new ulong[pieces.Length];
        for (var i = 1; i < pieces.Length; i++)
        {
            offsets[i] = offsets[i - 1] + (ulong)pieces[i - 1].Length;
        }
        var all = new List<byte>(FramedWireClient.Header(8, 2));
        for (var i = 0; i < pieces.Length; i++)
        {
            all.AddRange(FramedWireClient.Frame(offsets[i], pieces[i]));
        }
        all.AddRange(FramedWireClient.End());

        await using var wire = await FramedWireClient.OpenAsync(_server.Host.GrpcAddress);
        await wire.SendRawAsync(all.ToArray());
        var (answers, status) = await wire.ReadToStatusAsync();

        Assert.Equal(0, status.Code);
        Assert.All(answers, a => Assert.Null(a.Error));
        Assert.Equal(offsets, answers.Select(a => a.Offset));
        Assert.Equal(offsets.Select((o, i) => o + (ulong)pieces[i].Length), answers.Select(a => a.Length));
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await _server.ReadAllAsync(8));
    }

    [Fact]
    public async Task Large_frames_sent_in_reverse_order_are_held_on_pooled_payloads_and_land_byte_identical()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 9, Epoch = 3 });
        // Each held frame keeps its pooled payload while the ones after it are read into other pooled arrays, and the
        // arrays of frames that landed go back to the pool and are rented again: a payload returned too early shows as
        // wrong bytes. Half the frames take the generated parser's path (canonical encoding), half the codec's.
        var pieces = Enumerable.Range(0, 12).Select(i => RandomBytes((64 << 10) + (i * 37_000), 900 + i)).ToArray();
        var offsets = new ulong[pieces.Length];
        for (var i = 1; i < pieces.Length; i++)
        {
            offsets[i] = offsets[i - 1] + (ulong)pieces[i - 1].Length;
        }
        await using var wire = await FramedWireClient.OpenAsync(_server.Host.GrpcAddress);
        await wire.SendRawAsync(FramedWireClient.Header(9, 3));
        for (var i = pieces.Length - 1; i >= 0; i--)
        {
            await wire.SendRawAsync(i % 2 == 0 ? FramedWireClient.FrameAsSent(offsets[i], pieces[i]) : FramedWireClient.Frame(offsets[i], pieces[i]));
        }
        var again = RandomBytes(200 << 10, 999);
        var end = offsets[^1] + (ulong)pieces[^1].Length;
        await wire.SendRawAsync(FramedWireClient.FrameAsSent(end, again));
        await wire.SendRawAsync(FramedWireClient.End());
        var (answers, status) = await wire.ReadToStatusAsync();

        Assert.Equal(0, status.Code);
        Assert.All(answers, a => Assert.Null(a.Error));
        Assert.Equal([.. offsets, end], answers.Select(a => a.Offset));
        var expected = pieces.Append(again).SelectMany(p => p).ToArray();
        var stored = new List<byte>();
        while (stored.Count < expected.Length)
        {
            var read = await _server.Client.ReadAsync(new ReadRequest { ChunkId = 9, Offset = (ulong)stored.Count, Length = 1 << 20 });
            Assert.False(read.Data.IsEmpty, $"the chunk ends at {stored.Count} of {expected.Length} bytes");
            stored.AddRange(read.Data);
        }
        Assert.Equal(expected, stored.ToArray());
    }

    [Fact]
    public async Task A_server_with_framed_appends_off_never_answers_the_preface_with_ready_and_still_serves_grpc()
    {
        await using var plain = await ChunkServerUnderTest.StartAsync(_loggers,
            ChunkServerUnderTest.OptionsFor(_dir.Sub("plain")) with { FramedAppends = false });
        await using (var wire = await FramedWireClient.ConnectAsync(plain.Host.GrpcAddress))
        {
            // As the production client does: the preface and the header at once, without waiting for Ready (an HTTP/2 port
            // given the 18-byte preface alone waits for the rest of its own 24-byte one).
            await wire.SendRawAsync(AppendStreamWire.Preface.ToArray().Concat(FramedWireClient.Header(9, 1)).ToArray());
            var received = await wire.ReadToCloseAsync();
            output.WriteLine($"HTTP/2 answered the preface with {received.Length} bytes before closing: {Convert.ToHexString(received.AsSpan(0, Math.Min(received.Length, 32)))}");
            Assert.True(received.Length == 0 || received[0] != AppendStreamWire.Ready, "a server with framed appends off answered the preface with Ready");
        }

        await plain.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 9, Epoch = 1 });
        var data = RandomBytes(1000, 91);
        Assert.Equal(1000ul, (await plain.AppendAsync(9, 1, 0, data)).Length);
        Assert.Equal(1000ul, (await plain.InfoAsync(9)).Length);
        Assert.Equal(data, await plain.ReadAllAsync(9));
    }

    /// <summary>
    /// Opens a stream on a new chunk, lands one frame, then sends <paramref name="hostile"/>: the stream must end with
    /// InvalidArgument naming the problem, the chunk must keep just the frame, and the server must go on serving.
    /// </summary>
    private async Task AssertRefusedMidStreamAsync(ulong chunkId, byte[] hostile, string detail)
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = chunkId, Epoch = 1 });
        var first = RandomBytes(4096, (int)chunkId);
        await using (var wire = await FramedWireClient.OpenAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync(FramedWireClient.Header(chunkId, 1).Concat(FramedWireClient.Frame(0, first)).ToArray());
            Assert.Equal(4096ul, (await wire.ReadAnswerAsync()).Length);
            await wire.SendRawAsync(hostile);
            var (answers, status) = await wire.ReadToStatusAsync();
            Assert.Empty(answers);
            Assert.Equal(((int)StatusCode.InvalidArgument, ErrorReasons.InvalidArgument), (status.Code, status.Reason));
            Assert.Contains(detail, status.Detail, StringComparison.Ordinal);
        }
        Assert.Equal(4096ul, (await _server.InfoAsync(chunkId)).Length);
        Assert.Equal(first, await _server.ReadAllAsync(chunkId));
        await StillServesAsync(chunkId, first);
    }

    /// <summary>
    /// The port still serves a new framed stream and plain gRPC calls: appends to <paramref name="chunkId"/> (created
    /// with epoch 1 when <paramref name="before"/> is empty) over both, and reads it back whole.
    /// </summary>
    private async Task StillServesAsync(ulong chunkId, byte[] before)
    {
        if (before.Length == 0)
        {
            await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = chunkId, Epoch = 1 });
        }
        var framed = RandomBytes(1000, 1000 + (int)chunkId);
        await using (var wire = await FramedWireClient.OpenAsync(_server.Host.GrpcAddress))
        {
            await wire.SendRawAsync(FramedWireClient.Header(chunkId, 1)
                .Concat(FramedWireClient.Frame((ulong)before.Length, framed)).Concat(FramedWireClient.End()).ToArray());
            var (answers, status) = await wire.ReadToStatusAsync();
            Assert.Equal(0, status.Code);
            Assert.Equal((ulong)(before.Length + framed.Length), Assert.Single(answers).Length);
        }
        var unary = RandomBytes(500, 2000 + (int)chunkId);
        Assert.Equal((ulong)(before.Length + framed.Length + unary.Length),
            (await _server.AppendAsync(chunkId, 1, (ulong)(before.Length + framed.Length), unary)).Length);
        Assert.Equal((ulong)(before.Length + framed.Length + unary.Length), (await _server.InfoAsync(chunkId)).Length);
        Assert.Equal(before.Concat(framed).Concat(unary).ToArray(), await _server.ReadAllAsync(chunkId));
    }
}
