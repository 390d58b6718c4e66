using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// Pipelined appends through a real gRPC client: appends of one writer may arrive out of order; the chunk
/// server holds an early arrival until its predecessors land, applies strictly in offset order, refuses a
/// gap that never fills, and fences stale epochs and held appends cut off by a seal.
/// </summary>
public sealed class PipelinedAppendTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan ShortGap = TimeSpan.FromMilliseconds(300);
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _patient = null!;
    private ChunkServerUnderTest _hasty = null!;

    public async Task InitializeAsync()
    {
        // Generous gap timeout, so a loaded machine never turns "held" into "refused" in the ordering tests.
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

    [Fact]
    public async Task Eight_appends_arriving_in_reverse_order_are_applied_in_offset_order()
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 3 });
        var pieces = Enumerable.Range(0, 8).Select(i => RandomBytes(10_000 + (i * 777), 100 + i)).ToArray();
        var offsets = new ulong[pieces.Length];
        for (var i = 1; i < pieces.Length; i++)
        {
            offsets[i] = offsets[i - 1] + (ulong)pieces[i - 1].Length;
        }

        // Pieces 7..1 arrive first: each is held, none may land before piece 0.
        var held = new Task<AppendResponse>[pieces.Length];
        for (var i = pieces.Length - 1; i >= 1; i--)
        {
            held[i] = _patient.AppendAsync(1, 3, offsets[i], pieces[i]);
        }
        Assert.Equal(0ul, (await _patient.InfoAsync(1)).Length);
        Assert.All(held.Skip(1), t => Assert.False(t.IsCompleted));

        held[0] = _patient.AppendAsync(1, 3, 0, pieces[0]);
        var replies = await Task.WhenAll(held).WaitAsync(TimeSpan.FromMinutes(1));
        for (var i = 0; i < pieces.Length; i++)
        {
            Assert.Equal(offsets[i] + (ulong)pieces[i].Length, replies[i].Length);
        }
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await _patient.ReadAllAsync(1));
    }

    [Fact]
    public async Task A_gap_that_never_fills_is_refused_after_the_timeout_and_applies_nothing()
    {
        await _hasty.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1 });
        var first = RandomBytes(5000, 1);
        await _hasty.AppendAsync(2, 1, 0, first);

        // Bytes 5000..5999 never come: the appends behind them are refused after the timeout.
        var later = Enumerable.Range(0, 4).Select(i => _hasty.AppendAsync(2, 1, 6000 + (ulong)(i * 100), RandomBytes(100, 10 + i))).ToArray();
        foreach (var append in later)
        {
            var refused = await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => append);
            Assert.Contains("gap never filled", refused.Status.Detail);
        }
        Assert.Equal(5000ul, (await _hasty.InfoAsync(2)).Length);
        Assert.Equal(first, await _hasty.ReadAllAsync(2));

        // The chunk is unharmed: the writer goes on at the real length.
        var next = RandomBytes(3000, 2);
        Assert.Equal(8000ul, (await _hasty.AppendAsync(2, 1, 5000, next)).Length);
        var all = await _hasty.ReadAllAsync(2);
        Assert.Equal(first.Concat(next).ToArray(), all);
    }

    [Fact]
    public async Task A_stale_epoch_in_the_middle_of_a_pipeline_is_refused_on_arrival_and_never_lands()
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 3, Epoch = 7 });
        var pieces = Enumerable.Range(0, 6).Select(i => RandomBytes(4096, 200 + i)).ToArray();
        var held = new List<Task<AppendResponse>>();
        for (var i = 1; i < pieces.Length; i++)
        {
            if (i == 3)
            {
                // An old writer (epoch 6) slips an append into the pipeline at piece 3's offset: refused at once,
                // although it arrived ahead of the chunk's length and would otherwise be held.
                await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
                    () => _patient.AppendAsync(3, 6, 3 * 4096, RandomBytes(4096, 999)));
            }
            held.Add(_patient.AppendAsync(3, 7, (ulong)(i * 4096), pieces[i]));
        }
        await _patient.AppendAsync(3, 7, 0, pieces[0]);
        await Task.WhenAll(held).WaitAsync(TimeSpan.FromMinutes(1));
        var info = await _patient.InfoAsync(3);
        Assert.Equal(7ul, info.Epoch);
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await _patient.ReadAllAsync(3));
    }

    [Fact]
    public async Task A_seal_by_a_new_writer_refuses_the_appends_held_for_a_gap()
    {
        await _patient.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 4, Epoch = 1 });
        var first = RandomBytes(8192, 3);
        await _patient.AppendAsync(4, 1, 0, first);
        // Piece 8192..12287 is lost on the way; the two behind it are held.
        var held = new[]
        {
            _patient.AppendAsync(4, 1, 12288, RandomBytes(4096, 4)),
            _patient.AppendAsync(4, 1, 16384, RandomBytes(4096, 5)),
        };
        Assert.Equal(8192ul, (await _patient.InfoAsync(4)).Length);

        // A new writer takes over (epoch 2) and seals at the length every replica has.
        var sealedAt = await _patient.Client.SealAsync(new SealRequest { ChunkId = 4, Epoch = 2, Length = 8192 });
        Assert.Equal(8192ul, sealedAt.Length);
        foreach (var append in held)
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => append).WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
            Assert.Contains(FeitianStatus.ReasonOf(refused), new[] { ErrorReasons.StaleEpoch, ErrorReasons.Sealed });
        }
        // The old writer's late predecessor cannot land either.
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => _patient.AppendAsync(4, 1, 8192, RandomBytes(4096, 6)));
        var info = await _patient.InfoAsync(4);
        Assert.True(info.Sealed);
        Assert.Equal(8192ul, info.Length);
        Assert.Equal(first, await _patient.ReadAllAsync(4));
    }

    [Fact]
    public async Task An_append_far_past_the_length_or_the_chunk_end_is_refused_at_once()
    {
        await _hasty.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 5, Epoch = 1, MaxLength = 1 << 20 });
        await _hasty.AppendAsync(5, 1, 0, RandomBytes(100, 7));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.ChunkFull, () => _hasty.AppendAsync(5, 1, (1 << 20) - 10, RandomBytes(100, 8)));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => _hasty.AppendAsync(5, 1, ulong.MaxValue - 1000, RandomBytes(100, 9)));
        Assert.Equal(100ul, (await _hasty.InfoAsync(5)).Length);
    }
}
