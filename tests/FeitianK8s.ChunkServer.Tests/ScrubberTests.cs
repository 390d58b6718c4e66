using FeitianK8s.ChunkServer.Scrub;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>The scrubber over a real chunk store: it verifies every block, reports a flipped byte, and resumes a pass from its saved position.</summary>
public sealed class ScrubberTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    private async Task<ChunkStore> StoreWithSealedChunksAsync(params int[] lengths)
    {
        var store = ChunkStore.Open(new ChunkStoreOptions { DataDirs = [_dir.Sub("data")] }, _loggers);
        for (var i = 0; i < lengths.Length; i++)
        {
            var id = (ulong)(i + 1);
            store.Create(id, 1, 0);
            var data = new byte[lengths[i]];
            new Random(i).NextBytes(data);
            for (var at = 0; at < data.Length; at += 1 << 20)
            {
                var piece = data.AsMemory(at, Math.Min(1 << 20, data.Length - at));
                await store.AppendAsync(id, 1, (ulong)at, piece, Crc32C.Compute(piece.Span), fua: false);
            }
            await store.SealAsync(id, 1, (ulong)data.Length);
        }
        return store;
    }

    private Scrubber Scrubber(ChunkStore store, string progress, List<(ulong, string)> reports) =>
        new(store, 0, progress, (id, reason) => { reports.Add((id, reason)); return Task.CompletedTask; }, () => 1, TimeProvider.System,
            _loggers.CreateLogger<Scrubber>());

    [Fact]
    public async Task A_flipped_byte_is_reported_by_chunk_id_and_the_pass_is_persisted()
    {
        using var store = await StoreWithSealedChunksAsync(300_000, 1_000_000);
        var dataFile = new ChunkFiles(Path.Combine(_dir.Path, "data", ChunkFiles.SubDirectory), 2).Data;
        var original = File.ReadAllBytes(dataFile)[777_777];
        using (var stream = new FileStream(dataFile, FileMode.Open, FileAccess.Write))
        {
            stream.Position = 777_777;
            stream.WriteByte((byte)(original ^ 0xFF));
        }
        Assert.NotEqual(original, File.ReadAllBytes(dataFile)[777_777]);

        var progress = Path.Combine(_dir.Path, ScrubState.FileName);
        var reports = new List<(ulong, string)>();
        await Scrubber(store, progress, reports).PassAsync(CancellationToken.None);
        var report = Assert.Single(reports);
        Assert.Equal(2UL, report.Item1);
        var saved = ScrubState.Load(progress, 0);
        Assert.Equal(1UL, saved.BadFound);
        Assert.Equal(1UL, saved.PassesCompleted);
        Assert.True(saved.LastCompletedUnixMs > 0);
        // Chunk 1 whole, chunk 2 up to the 256 KiB piece holding the flipped byte.
        Assert.Equal(300_000UL + 2 * Scrub.Scrubber.PieceBytes, saved.BytesVerified);
    }

    [Fact]
    public async Task A_restarted_scrubber_resumes_at_the_saved_chunk_and_offset()
    {
        using var store = await StoreWithSealedChunksAsync(300_000, 1_000_000, 500_000);
        var progress = Path.Combine(_dir.Path, ScrubState.FileName);
        new ScrubState(PassStartedUnixMs: 1, ChunkId: 2, Offset: 524_288, BytesVerified: 824_288, BadFound: 0, LastCompletedUnixMs: 0, PassesCompleted: 0).Save(progress);

        var reports = new List<(ulong, string)>();
        var scrubber = Scrubber(store, progress, reports);
        Assert.Equal(2UL, scrubber.State.ChunkId);
        await scrubber.PassAsync(CancellationToken.None);
        Assert.Empty(reports);
        // Only the rest of chunk 2 and all of chunk 3 were read: nothing of chunk 1 again.
        Assert.Equal(824_288UL + (1_000_000 - 524_288) + 500_000, scrubber.State.BytesVerified);
        Assert.Equal(1UL, ScrubState.Load(progress, 0).PassesCompleted);
    }
}
