using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>Create, append, read, seal, delete and info through a real gRPC client against an in-process server.</summary>
public sealed class ChunkOperationsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _server = null!;

    public async Task InitializeAsync() => _server = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("data")));

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Appends_of_random_sizes_read_back_identically_at_any_offset()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        var expected = new MemoryStream();
        var random = new Random(7);
        foreach (var size in new[] { 1, 4095, 4096, 4097, 100_000, 1 << 20, 3, 8191, 4 << 20 })
        {
            var data = RandomBytes(size, random.Next());
            var response = await _server.AppendAsync(1, 1, (ulong)expected.Length, data, fua: size % 2 == 0);
            expected.Write(data);
            Assert.Equal((ulong)expected.Length, response.Length);
        }
        var all = expected.ToArray();
        Assert.Equal(all, await _server.ReadAllAsync(1));

        foreach (var (offset, length) in new[] { (0, 1), (4095, 2), (4096, 4096), (12345, 700_000), (all.Length - 10, 10), (all.Length - 10, 100) })
        {
            var read = await _server.Client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = (ulong)offset, Length = (uint)length });
            var clipped = Math.Min(length, all.Length - offset);
            Assert.Equal(all.AsSpan(offset, clipped).ToArray(), read.Data.ToByteArray());
            Assert.Equal(Crc32C.Compute(read.Data.Span), read.Crc32C);
            Assert.Equal((ulong)all.Length, read.ChunkLength);
            Assert.False(read.Sealed);
        }
        var atEnd = await _server.Client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = (ulong)all.Length, Length = 100 });
        Assert.Equal(0, atEnd.Data.Length);

        var sync = await _server.Client.SyncAsync(new SyncRequest { ChunkId = 1 });
        Assert.Equal((ulong)all.Length, sync.Length);
    }

    [Fact]
    public async Task Create_is_idempotent_for_the_same_epoch_and_refuses_others()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 5 });
        await _server.AppendAsync(2, 5, 0, [1, 2, 3]);
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 5 });
        Assert.Equal(3ul, (await _server.InfoAsync(2)).Length);
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            async () => await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 4 }));
        await FailsAsync(StatusCode.AlreadyExists, ErrorReasons.AlreadyExists,
            async () => await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 6 }));
        Assert.Equal(3ul, (await _server.InfoAsync(2)).Length);
    }

    [Fact]
    public async Task Append_with_a_bad_checksum_is_refused_and_applies_nothing()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 3, Epoch = 1 });
        var good = RandomBytes(5000, 1);
        await _server.AppendAsync(3, 1, 0, good);
        var bad = RandomBytes(3000, 2);
        await FailsAsync(StatusCode.DataLoss, ErrorReasons.ChecksumMismatch, async () => await _server.Client.AppendAsync(new AppendRequest
        {
            ChunkId = 3, Epoch = 1, ExpectedOffset = 5000, Data = ByteString.CopyFrom(bad), Crc32C = Crc32C.Compute(bad) ^ 1,
        }));
        Assert.Equal(5000ul, (await _server.InfoAsync(3)).Length);
        Assert.Equal(5000, new FileInfo(_server.DataFile(3)).Length);
        Assert.Equal(good, await _server.ReadAllAsync(3));
    }

    [Fact]
    public async Task Stale_epoch_and_wrong_offset_are_refused_with_reasons_and_apply_nothing()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 4, Epoch = 3 });
        var first = RandomBytes(6000, 3);
        await _server.AppendAsync(4, 3, 0, first);

        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => _server.AppendAsync(4, 2, 6000, RandomBytes(10, 4)));

        var wrong = await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => _server.AppendAsync(4, 3, 5999, RandomBytes(10, 5)));
        Assert.Equal("6000", FeitianStatus.TrailerOf(wrong, FeitianStatus.ChunkLengthTrailer));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => _server.AppendAsync(4, 3, 6001, RandomBytes(10, 5)));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => _server.AppendAsync(4, 3, ulong.MaxValue, RandomBytes(10, 5)));

        // A newer writer raises the epoch; the old one is fenced from then on.
        var second = RandomBytes(100, 6);
        await _server.AppendAsync(4, 4, 6000, second);
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => _server.AppendAsync(4, 3, 6100, RandomBytes(10, 7)));

        var info = await _server.InfoAsync(4);
        Assert.Equal(6100ul, info.Length);
        Assert.Equal(4ul, info.Epoch);
        var expected = first.Concat(second).ToArray();
        Assert.Equal(expected, await _server.ReadAllAsync(4));
    }

    [Fact]
    public async Task Seal_truncates_fences_and_is_idempotent_only_at_the_same_length()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 5, Epoch = 1 });
        var data = RandomBytes(10_000, 8);
        await _server.AppendAsync(5, 1, 0, data);

        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.InvalidArgument,
            async () => await _server.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 2, Length = 10_001 }));
        var sealedResponse = await _server.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 2, Length = 5000 });
        Assert.Equal(5000ul, sealedResponse.Length);

        var info = await _server.InfoAsync(5);
        Assert.True(info.Sealed);
        Assert.Equal(5000ul, info.Length);
        Assert.Equal(2ul, info.Epoch);
        Assert.Equal(data[..5000], await _server.ReadAllAsync(5));
        Assert.Equal(5000, new FileInfo(_server.DataFile(5)).Length);

        Assert.Equal(5000ul, (await _server.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 2, Length = 5000 })).Length);
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed,
            async () => await _server.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 2, Length = 4000 }));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            async () => await _server.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 1, Length = 5000 }));

        // Sealed chunks refuse appends, even at the right offset with a current epoch.
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed, () => _server.AppendAsync(5, 2, 5000, RandomBytes(10, 9)));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed, () => _server.AppendAsync(5, 3, 5000, RandomBytes(10, 9)));
        Assert.Equal(data[..5000], await _server.ReadAllAsync(5));
        Assert.True((await _server.Client.ReadAsync(new ReadRequest { ChunkId = 5, Offset = 0, Length = 10 })).Sealed);
    }

    [Fact]
    public async Task Seal_at_current_length_freezes_the_chunk_without_cutting_and_later_appends_are_refused()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 15, Epoch = 3 });
        var data = RandomBytes(7_000, 15);
        await _server.AppendAsync(15, 3, 0, data);

        // The length field is ignored: the master freezes before it knows the seal length.
        var frozen = await _server.Client.SealAsync(new SealRequest { ChunkId = 15, Epoch = 3, Length = 1, AtCurrentLength = true });
        Assert.Equal(7_000ul, frozen.Length);
        var info = await _server.InfoAsync(15);
        Assert.True(info.Sealed);
        Assert.Equal(7_000ul, info.Length);
        Assert.Equal(data, await _server.ReadAllAsync(15));

        // The writer's next append (same epoch, right offset) is refused as sealed: nothing lands after the freeze.
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed, () => _server.AppendAsync(15, 3, 7_000, RandomBytes(10, 16)));
        // Freezing again reports the same length; a stale epoch is refused as for any seal.
        Assert.Equal(7_000ul, (await _server.Client.SealAsync(new SealRequest { ChunkId = 15, Epoch = 3, AtCurrentLength = true })).Length);
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            async () => await _server.Client.SealAsync(new SealRequest { ChunkId = 15, Epoch = 2, AtCurrentLength = true }));
        Assert.Equal(data, await _server.ReadAllAsync(15));
    }

    [Fact]
    public async Task Appends_past_the_chunk_max_length_are_refused_as_chunk_full()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 6, Epoch = 1, MaxLength = 8192 });
        var data = RandomBytes(8000, 10);
        await _server.AppendAsync(6, 1, 0, data);
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.ChunkFull, () => _server.AppendAsync(6, 1, 8000, RandomBytes(193, 11)));
        await _server.AppendAsync(6, 1, 8000, RandomBytes(192, 12));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.ChunkFull, () => _server.AppendAsync(6, 1, 8192, RandomBytes(1, 13)));
        Assert.Equal(8192ul, (await _server.InfoAsync(6)).Length);
        Assert.Equal(data, (await _server.ReadAllAsync(6))[..8000]);
    }

    [Fact]
    public async Task Delete_removes_the_chunk_and_its_files()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 7, Epoch = 1 });
        await _server.AppendAsync(7, 1, 0, RandomBytes(100, 14));
        Assert.True(File.Exists(_server.DataFile(7)));
        await _server.Client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 7 });
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _server.InfoAsync(7));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _server.AppendAsync(7, 1, 100, RandomBytes(1, 1)));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, async () => await _server.Client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 7 }));
        Assert.Empty(Directory.GetFiles(_server.ChunksDir, $"{7:x16}*"));

        // The id can be used again afterwards.
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 7, Epoch = 9 });
        Assert.Equal(0ul, (await _server.InfoAsync(7)).Length);
    }

    [Fact]
    public async Task Info_reports_length_sealed_and_epoch()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 8, Epoch = 11 });
        var info = await _server.InfoAsync(8);
        Assert.Equal((8ul, 0ul, false, 11ul), (info.ChunkId, info.Length, info.Sealed, info.Epoch));
        await _server.AppendAsync(8, 12, 0, RandomBytes(77, 15));
        info = await _server.InfoAsync(8);
        Assert.Equal((8ul, 77ul, false, 12ul), (info.ChunkId, info.Length, info.Sealed, info.Epoch));
    }

    [Fact]
    public async Task Concurrent_appends_to_different_chunks_all_land()
    {
        var ids = Enumerable.Range(100, 8).Select(i => (ulong)i).ToArray();
        foreach (var id in ids)
        {
            await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = id, Epoch = 1 });
        }
        var payloads = ids.ToDictionary(id => id, id => Enumerable.Range(0, 10).Select(i => RandomBytes(10_000 + i, (int)id * 100 + i)).ToArray());
        await Task.WhenAll(ids.Select(async id =>
        {
            ulong offset = 0;
            foreach (var piece in payloads[id])
            {
                offset = (await _server.AppendAsync(id, 1, offset, piece)).Length;
            }
        }));
        foreach (var id in ids)
        {
            Assert.Equal(payloads[id].SelectMany(p => p).ToArray(), await _server.ReadAllAsync(id));
        }
    }

    [Fact]
    public async Task Racing_appends_at_the_same_offset_apply_exactly_one()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 9, Epoch = 1 });
        var candidates = Enumerable.Range(0, 8).Select(i => RandomBytes(50_000, 500 + i)).ToArray();
        var outcomes = await Task.WhenAll(candidates.Select(async data =>
        {
            try
            {
                await _server.AppendAsync(9, 1, 0, data);
                return (Data: data, Won: true);
            }
            catch (RpcException error) when (FeitianStatus.HasReason(error, ErrorReasons.WrongOffset))
            {
                return (Data: data, Won: false);
            }
        }));
        var winner = Assert.Single(outcomes, o => o.Won);
        Assert.Equal(winner.Data, await _server.ReadAllAsync(9));
    }
}
