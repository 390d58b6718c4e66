using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Testing;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// The append stream header's drop-behind hint: once appended bytes are durable, a replica the writer does
/// not read drops them from its page cache (whole pages below the tail), and every byte still reads back
/// intact, from disk, across further appends at a partial page and a restart. Page-cache residency is
/// measured with util-linux's fincore.
/// </summary>
public sealed class DropBehindTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _server = null!;

    public async Task InitializeAsync() => _server = await StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    private Task<ChunkServerUnderTest> StartAsync() => ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("data")));

    [Theory]
    [InlineData(AppendTransport.Framed)]
    [InlineData(AppendTransport.Grpc)]
    public async Task Durable_bytes_of_a_drop_behind_stream_leave_the_page_cache_and_read_back_intact(AppendTransport transport)
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        var expected = new MemoryStream();
        await using (var stream = await AppendTestStream.OpenAsync(transport, _server, 1, 1, dropBehind: true))
        {
            await AppendAsync(stream, expected, [(1 << 20) + 123, 5000, (2 << 20) - 7], fuaLast: true);
        }
        var pageSize = Environment.SystemPageSize;
        var resident = await PageCacheProbe.ResidentBytesAsync(output, _server.DataFile(1));
        output.WriteLine($"{transport}: {resident} of {expected.Length} bytes resident after a FUA append");
        Assert.True(resident <= pageSize, $"{resident} bytes of {expected.Length} still cached; only the tail page may stay");

        // The next appends start inside the kept tail page; Sync makes them durable and drops them too. (Reads
        // come last: they cache what they read again.)
        await using (var stream = await AppendTestStream.OpenAsync(transport, _server, 1, 1, dropBehind: true))
        {
            await AppendAsync(stream, expected, [4097, 300_000], fuaLast: false);
        }
        Assert.Equal((ulong)expected.Length, (await _server.Client.SyncAsync(new SyncRequest { ChunkId = 1 })).Length);
        resident = await PageCacheProbe.ResidentBytesAsync(output, _server.DataFile(1));
        Assert.True(resident <= pageSize, $"{resident} bytes of {expected.Length} still cached after sync");
        Assert.Equal(expected.ToArray(), await _server.ReadAllAsync(1));

        await _server.DisposeAsync();
        _server = await StartAsync();
        Assert.Equal((ulong)expected.Length, (await _server.InfoAsync(1)).Length);
        Assert.Equal(expected.ToArray(), await _server.ReadAllAsync(1));
    }

    [Fact]
    public async Task Without_the_hint_appended_pages_stay_cached_and_a_later_hint_drops_them_at_seal()
    {
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1 });
        var expected = new MemoryStream();
        await using (var stream = await AppendTestStream.OpenAsync(AppendTransport.Framed, _server, 2, 1))
        {
            await AppendAsync(stream, expected, [3 << 20, 777], fuaLast: true);
        }
        var cached = await PageCacheProbe.ResidentBytesAsync(output, _server.DataFile(2));
        output.WriteLine($"without the hint: {cached} of {expected.Length} bytes resident");
        Assert.True(cached >= expected.Length - Environment.SystemPageSize, $"only {cached} of {expected.Length} bytes cached without the hint");

        // A new writer that reads elsewhere (e.g. after a takeover) sends the hint: the chunk drops behind from then on.
        await using (var stream = await AppendTestStream.OpenAsync(AppendTransport.Framed, _server, 2, 2, dropBehind: true))
        {
            await AppendAsync(stream, expected, [65_536], fuaLast: false);
        }
        await _server.Client.SealAsync(new SealRequest { ChunkId = 2, Epoch = 2, Length = (ulong)expected.Length });
        var resident = await PageCacheProbe.ResidentBytesAsync(output, _server.DataFile(2));
        Assert.True(resident <= Environment.SystemPageSize, $"{resident} bytes of the sealed chunk still cached");
        Assert.Equal(expected.ToArray(), await _server.ReadAllAsync(2));
    }

    private static async Task AppendAsync(AppendTestStream stream, MemoryStream expected, int[] sizes, bool fuaLast)
    {
        for (var i = 0; i < sizes.Length; i++)
        {
            var data = RpcAssert.RandomBytes(sizes[i], (int)expected.Length + i);
            await stream.SendFrameAsync(new AppendFrame
            {
                Offset = (ulong)expected.Length,
                Data = ByteString.CopyFrom(data),
                Crc32C = Crc32C.Compute(data),
                Fua = fuaLast && i == sizes.Length - 1,
            });
            expected.Write(data);
        }
        var answers = await stream.AnswersAsync(sizes.Length);
        Assert.All(answers, a => Assert.Null(a.Error));
        Assert.Equal((ulong)expected.Length, answers.Max(a => a.Length));
    }
}
