using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// Append streams through real clients, each test over both transports (the AppendStream gRPC call and
/// the framed append protocol, <see cref="AppendTransport"/>): frames follow the rules of unary appends (held
/// while early, applied in offset order, a gap refused after the timeout, stale epochs and seals
/// refused), and a hostile stream gets a clear error, writes nothing and leaves the server serving.
/// </summary>
public sealed class AppendStreamTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan ShortGap = TimeSpan.FromMilliseconds(300);
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _patient = null!;
    private ChunkServerUnderTest _hasty = null!;

    public async Task InitializeAsync()
    {
        _patient = await ChunkServerUnderTest.StartAsync(_loggers,
            ChunkServerUnderTest.OptionsFor(_dir.Sub("patient")) with { AppendGapTimeout = TimeSpan.FromMinutes(2) });
        _hasty = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("hasty")) with { AppendGapTimeout = ShortGap });
    }

    public async Task DisposeAsync()
    {
        await _patient.DisposeAsync();
        await _hasty.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task Frames_sent_in_reverse_order_are_held_then_applied_in_offset_order(AppendTransport transport)
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 3 });
        var pieces = Enumerable.Range(0, 8).Select(i => RandomBytes(10_000 + (i * 777), 100 + i)).ToArray();
        var offsets = Offsets(pieces);
        await using var stream = await AppendTestStream.OpenAsync(transport, _patient, 1, 3);
        for (var i = pieces.Length - 1; i >= 1; i--)
        {
            await stream.SendAsync(offsets[i], pieces[i]);
        }
        Assert.Equal(0ul, (await _patient.InfoAsync(1)).Length);
        await stream.SendAsync(0, pieces[0]);

        var answers = await stream.AnswersAsync(pieces.Length);
        Assert.All(answers, a => Assert.Null(a.Error));
        Assert.Equal(offsets.Select((o, i) => o + (ulong)pieces[i].Length).Order(), answers.Select(a => a.Length).Order());
        Assert.All(answers, a => Assert.Equal(a.Length, a.Offset + (ulong)pieces[Array.IndexOf(offsets, a.Offset)].Length));
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await _patient.ReadAllAsync(1));
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task A_gap_never_filled_is_refused_as_wrong_offset_and_the_stream_goes_on(AppendTransport transport)
    {
        await _hasty.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1 });
        var first = RandomBytes(5000, 1);
        await using var stream = await AppendTestStream.OpenAsync(transport, _hasty, 2, 1);
        await stream.SendAsync(0, first);
        await stream.SendAsync(6000, RandomBytes(100, 2)); // bytes 5000..5999 never come
        var answers = await stream.AnswersAsync(2);
        Assert.Equal(5000ul, answers.Single(a => a.Offset == 0).Length);
        var refused = answers.Single(a => a.Offset == 6000).Error;
        Assert.NotNull(refused);
        Assert.Equal((StatusCode.OutOfRange, ErrorReasons.WrongOffset), ((StatusCode)refused.Code, refused.Reason));
        Assert.Contains("gap never filled", refused.Detail);
        Assert.Equal(5000ul, refused.ChunkLength);

        var next = RandomBytes(3000, 3);
        await stream.SendAsync(5000, next);
        Assert.Equal(8000ul, (await stream.AnswersAsync(1)).Single().Length);
        Assert.Equal(first.Concat(next).ToArray(), await _hasty.ReadAllAsync(2));
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task A_fence_in_the_middle_of_a_stream_refuses_its_frames_from_then_on(AppendTransport transport)
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 3, Epoch = 7 });
        var pieces = Enumerable.Range(0, 6).Select(i => RandomBytes(4096, 200 + i)).ToArray();
        await using var stream = await AppendTestStream.OpenAsync(transport, _patient, 3, 7);
        await stream.SendAsync(0, pieces[0]);
        await stream.SendAsync(4096, pieces[1]);
        Assert.All(await stream.AnswersAsync(2), a => Assert.Null(a.Error));

        // A new writer fences the chunk with epoch 8.
        await _patient.Client.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = 3, FenceEpoch = 8 });
        for (var i = 2; i < pieces.Length; i++)
        {
            await stream.SendAsync((ulong)(i * 4096), pieces[i]);
        }
        var refused = await stream.AnswersAsync(pieces.Length - 2);
        Assert.All(refused, a => Assert.Equal(ErrorReasons.StaleEpoch, a.Error?.Reason));
        Assert.All(refused, a => Assert.Equal((int)StatusCode.FailedPrecondition, a.Error!.Code));
        var info = await _patient.InfoAsync(3);
        Assert.Equal((8192ul, 8ul), (info.Length, info.Epoch));
        Assert.Equal(pieces.Take(2).SelectMany(p => p).ToArray(), await _patient.ReadAllAsync(3));
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task A_seal_refuses_the_frames_held_for_a_gap(AppendTransport transport)
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 4, Epoch = 1 });
        var first = RandomBytes(8192, 3);
        await using var stream = await AppendTestStream.OpenAsync(transport, _patient, 4, 1);
        await stream.SendAsync(0, first);
        Assert.Null((await stream.AnswersAsync(1)).Single().Error);
        await stream.SendAsync(12288, RandomBytes(4096, 4));
        await stream.SendAsync(16384, RandomBytes(4096, 5));

        await _patient.Client.SealAsync(new SealRequest { ChunkId = 4, Epoch = 2, Length = 8192 });
        var refused = await stream.AnswersAsync(2);
        Assert.All(refused, a => Assert.Contains(a.Error?.Reason, new[] { ErrorReasons.StaleEpoch, ErrorReasons.Sealed }));
        var info = await _patient.InfoAsync(4);
        Assert.Equal((8192ul, true), (info.Length, info.Sealed));
        Assert.Equal(first, await _patient.ReadAllAsync(4));
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task Hostile_frames_get_typed_refusals_write_nothing_and_the_stream_keeps_serving(AppendTransport transport)
    {
        await _hasty.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 5, Epoch = 1, MaxLength = 1 << 20 });
        var data = RandomBytes(100, 7);
        await using var stream = await AppendTestStream.OpenAsync(transport, _hasty, 5, 1);
        await stream.SendAsync(ulong.MaxValue - 10, data);
        await stream.SendFrameAsync(new AppendFrame { Offset = 0, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) ^ 1 });
        await stream.SendAsync(0, RandomBytes((4 << 20) + 1, 8));
        await stream.SendFrameAsync(new AppendFrame { Offset = 0 });
        await stream.SendAsync((1 << 20) - 10, data);
        var answers = await stream.AnswersAsync(5);
        Assert.Equal(
            new[] { ErrorReasons.ChecksumMismatch, ErrorReasons.ChunkFull, ErrorReasons.InvalidArgument, ErrorReasons.TooLarge, ErrorReasons.WrongOffset },
            answers.Select(a => a.Error?.Reason ?? "ok").Order(StringComparer.Ordinal));
        Assert.Equal(0ul, (await _hasty.InfoAsync(5)).Length);

        await stream.SendAsync(0, data);
        Assert.Equal(100ul, (await stream.AnswersAsync(1)).Single().Length);
        Assert.Equal(data, await _hasty.ReadAllAsync(5));
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task A_stream_without_a_header_or_with_a_second_one_or_for_an_unknown_chunk_ends_with_a_clear_error(AppendTransport transport)
    {
        await _hasty.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 6, Epoch = 2 });
        var data = RandomBytes(100, 9);
        var frame = new AppendStreamRequest { Frame = new AppendFrame { Offset = 0, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) } };
        var header = new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 6, Epoch = 2 } };

        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => AppendTestStream.RunAsync(transport, _hasty, frame));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => AppendTestStream.RunAsync(transport, _hasty, header, header));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => AppendTestStream.RunAsync(transport, _hasty, header, new AppendStreamRequest()));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound,
            () => AppendTestStream.RunAsync(transport, _hasty, new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 999, Epoch = 2 } }, frame));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => AppendTestStream.RunAsync(transport, _hasty, new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 6, Epoch = 1 } }, frame));
        Assert.Equal(0ul, (await _hasty.InfoAsync(6)).Length);
        Assert.DoesNotContain(_hasty.Host.Store.Inventory(), c => c.Id == 999);

        // The server still serves.
        Assert.Equal(100ul, (await _hasty.AppendAsync(6, 2, 0, data)).Length);
    }

    [Theory]
    [InlineData(AppendTransport.Grpc)]
    [InlineData(AppendTransport.Framed)]
    public async Task A_client_that_resets_its_stream_with_a_frame_held_leaves_the_chunk_as_it_was_and_the_server_serving(AppendTransport transport)
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 7, Epoch = 1 });
        var first = RandomBytes(4096, 11);
        await using var stream = await AppendTestStream.OpenAsync(transport, _patient, 7, 1);
        await stream.SendAsync(0, first);
        Assert.Null((await stream.AnswersAsync(1)).Single().Error);
        await stream.SendAsync(8192, RandomBytes(4096, 12)); // held: bytes 4096..8191 never come
        // Frames are read in order: the refusal of a corrupt frame sent after it proves the server holds it.
        var corrupt = RandomBytes(10, 14);
        await stream.SendFrameAsync(new AppendFrame { Offset = 4096, Data = ByteString.CopyFrom(corrupt), Crc32C = Crc32C.Compute(corrupt) ^ 1 });
        Assert.Equal(ErrorReasons.ChecksumMismatch, (await stream.AnswersAsync(1)).Single().Error?.Reason);
        stream.Reset();
        // The reset reaches the server asynchronously: wait until it dropped the held frame.
        using (var http = new HttpClient())
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!(await http.GetStringAsync(_patient.Host.HttpAddress + "/metrics")).Contains(
                       "feitian_chunkserver_requests_total{method=\"AppendStreamFrame\",reason=\"cancelled\"} 1", StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < deadline, "the held frame of the reset stream was not dropped within 30 s");
                await Task.Delay(50);
            }
        }
        Assert.Equal(4096ul, (await _patient.InfoAsync(7)).Length);

        // The writer's next stream carries on at the real length; the held frame of the reset stream never lands.
        var next = RandomBytes(4096, 13);
        await using (var again = await AppendTestStream.OpenAsync(transport, _patient, 7, 1))
        {
            await again.SendAsync(4096, next);
            var answer = (await again.AnswersAsync(1)).Single();
            Assert.Null(answer.Error);
            Assert.Equal(8192ul, answer.Length);
        }
        Assert.Equal(first.Concat(next).ToArray(), await _patient.ReadAllAsync(7));
    }

    private static ulong[] Offsets(byte[][] pieces)
    {
        var offsets = new ulong[pieces.Length];
        for (var i = 1; i < pieces.Length; i++)
        {
            offsets[i] = offsets[i - 1] + (ulong)pieces[i - 1].Length;
        }
        return offsets;
    }
}
