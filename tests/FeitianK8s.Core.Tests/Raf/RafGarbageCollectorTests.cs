using System.Diagnostics;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class RafGarbageCollectorTests(ITestOutputHelper output)
{
    private const int Chunk = 16 << 10;

    [Fact]
    public async Task OverwritingFiveTimesThenGcKeepsSpaceUnderTwiceTheVolume()
    {
        const int size = 1 << 20;
        var harness = new RafHarness(output, size);
        var expected = new byte[size];
        var random = new Random(42);
        var volume = await harness.OpenAsync();
        for (var pass = 0; pass < 5; pass++)
        {
            foreach (var chunk in Enumerable.Range(0, size / Chunk).OrderBy(_ => random.Next()))
            {
                var data = RafHarness.Pattern(Chunk, (pass * 1000) + chunk);
                data.CopyTo(expected, chunk * Chunk);
                await volume.WriteAsync(chunk * Chunk, data, fua: false);
            }
        }
        var before = await harness.SpaceUsedAsync();
        var result = await volume.RunGcOnceAsync();
        var after = await harness.SpaceUsedAsync();
        output.WriteLine($"space before GC {before}, after {after}; {result}");
        Assert.True(before > 5L * size);
        Assert.True(after < 2L * size, $"space after GC {after} is not under {2 * size}");
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after GC");

        await volume.DisposeAsync();
        volume = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after GC and clean reopen");
        await volume.CrashForTestAsync();
        await using var recovered = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(recovered), "after GC and crash recovery");
    }

    [Fact]
    public async Task MostlyDeadHeadSegmentIsSealedAndCollected()
    {
        const int size = 256 << 10;
        var harness = new RafHarness(output, size, new RafOptions
        {
            SegmentSizeBytes = 16 << 20,
            MaxRecordDataBytes = Chunk,
            GcSealHeadMinBytes = 512 << 10,
            GcBandwidthBytesPerSecond = 0,
            GcInterval = null,
        });
        var expected = new byte[size];
        var volume = await harness.OpenAsync();
        for (var pass = 0; pass < 5; pass++)
        {
            for (var chunk = 0; chunk < size / Chunk; chunk++)
            {
                var data = RafHarness.Pattern(Chunk, (pass * 1000) + chunk);
                data.CopyTo(expected, chunk * Chunk);
                await volume.WriteAsync(chunk * Chunk, data, fua: false);
            }
        }
        Assert.Single(await harness.SegmentsAsync());
        var result = await volume.RunGcOnceAsync();
        var after = await harness.SpaceUsedAsync();
        output.WriteLine($"{result}; space after GC {after}");
        Assert.True(after < 2L * size, $"space after GC {after} is not under {2 * size}");
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after GC of the head");
        await volume.CrashForTestAsync();
        await using var recovered = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(recovered), "after GC of the head and crash recovery");
    }

    [Fact]
    public async Task TrimRecordInACollectedSegmentDoesNotResurrectData()
    {
        var harness = new RafHarness(output);
        var volume = await harness.OpenAsync();
        // Segment 1: X, Y1, Y2 (the 64 KiB segment rolls before the next 16 KiB record).
        await volume.WriteAsync(0, RafHarness.Pattern(Chunk, 1), fua: false);
        await volume.WriteAsync(Chunk, RafHarness.Pattern(Chunk, 2), fua: false);
        await volume.WriteAsync(2 * Chunk, RafHarness.Pattern(Chunk, 3), fua: false);
        // A checkpoint from before the trim: if recovery ever used it, X would come back.
        await volume.CheckpointAsync();
        const int filler = 512 << 10;
        for (var i = 0; i < 3; i++)
        {
            await volume.WriteAsync(filler + (i * Chunk), RafHarness.Pattern(Chunk, 10 + i), fua: false);
        }
        await volume.TrimAsync(0, Chunk);
        for (var i = 3; i < 8; i++)
        {
            await volume.WriteAsync(filler + (i * Chunk), RafHarness.Pattern(Chunk, 10 + i), fua: false);
        }
        // Overwrite every filler chunk: the segments holding the first fillers and the trim record become dead.
        for (var i = 0; i < 8; i++)
        {
            await volume.WriteAsync(filler + (i * Chunk), RafHarness.Pattern(Chunk, 100 + i), fua: false);
        }
        var layout = new RafLayout(harness.Directory);
        var result = await volume.RunGcOnceAsync();
        output.WriteLine($"{result}; segments left: {string.Join(", ", await harness.SegmentsAsync())}");
        Assert.Contains(layout.SegmentPath(1), await harness.SegmentsAsync());
        Assert.DoesNotContain(layout.SegmentPath(2), await harness.SegmentsAsync());
        await volume.CrashForTestAsync();

        await using var reopened = await harness.OpenAsync();
        var read = new byte[3 * Chunk];
        await reopened.ReadAsync(0, read);
        Assert.All(read[..Chunk], b => Assert.Equal(0, b));
        Assert.Equal(RafHarness.Pattern(Chunk, 2), read[Chunk..(2 * Chunk)]);
        Assert.Equal(RafHarness.Pattern(Chunk, 3), read[(2 * Chunk)..]);
        var fillers = new byte[8 * Chunk];
        await reopened.ReadAsync(filler, fillers);
        for (var i = 0; i < 8; i++)
        {
            Assert.Equal(RafHarness.Pattern(Chunk, 100 + i), fillers[(i * Chunk)..((i + 1) * Chunk)]);
        }
    }

    [Fact]
    public async Task GcConcurrentWithOverwritesNeverLosesTheNewerWrite()
    {
        const int size = 512 << 10;
        var harness = new RafHarness(output, size, RafHarness.SmallOptions() is var o
            ? new RafOptions
            {
                SegmentSizeBytes = o.SegmentSizeBytes,
                MaxRecordDataBytes = 4096,
                MaxBatchBytes = o.MaxBatchBytes,
                CheckpointIntervalBytes = o.CheckpointIntervalBytes,
                GcLiveThreshold = 0.95,
                GcBandwidthBytesPerSecond = 0,
                GcInterval = null,
            }
            : null);
        var expected = new byte[size];
        var volume = await harness.OpenAsync();
        for (var offset = 0; offset < size; offset += 4096)
        {
            var data = RafHarness.Pattern(4096, offset);
            data.CopyTo(expected, offset);
            await volume.WriteAsync(offset, data, fua: false);
        }
        using var stop = new CancellationTokenSource();
        var collections = 0;
        var gc = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                Interlocked.Add(ref collections, (await volume.RunGcOnceAsync()).SegmentsCollected);
            }
        });
        var random = new Random(7);
        // 1500 steps, and on until the GC has collected a segment meanwhile (a loaded machine may give its task little time).
        var deadline = DateTime.UtcNow.AddSeconds(60);
        for (var i = 0; i < 1500 || (Volatile.Read(ref collections) == 0 && DateTime.UtcNow < deadline); i++)
        {
            var offset = random.Next(size - 6000);
            var length = random.Next(1, 6000);
            if (random.Next(5) == 0)
            {
                Array.Clear(expected, offset, length);
                await volume.TrimAsync(offset, length);
            }
            else
            {
                var data = RafHarness.Pattern(length, i);
                data.CopyTo(expected, offset);
                await volume.WriteAsync(offset, data, fua: false);
            }
            var readOffset = random.Next(size - 20_000);
            var read = new byte[20_000];
            await volume.ReadAsync(readOffset, read);
            RafHarness.AssertSameBytes(expected[readOffset..(readOffset + read.Length)], read, $"read at {readOffset} during GC, step {i}");
        }
        await stop.CancelAsync();
        await gc;
        output.WriteLine($"segments collected while writing: {collections}");
        Assert.True(collections > 0);
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after concurrent GC");
        await volume.CrashForTestAsync();
        await using var recovered = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(recovered), "after concurrent GC and crash recovery");
    }

    [Fact]
    public async Task Gc_reads_a_segment_fragmented_by_small_writes_in_a_few_large_reads_and_moves_every_live_byte()
    {
        const int size = 1 << 20;
        const int block = 4096;
        var harness = new RafHarness(output, size, new RafOptions
        {
            SegmentSizeBytes = 256 << 10,
            MaxRecordDataBytes = block,
            MaxBatchBytes = 64 << 10,
            CheckpointIntervalBytes = 256 << 10,
            GcLiveThreshold = 0.99,
            GcBandwidthBytesPerSecond = 0,
            GcInterval = null,
            Holder = "test",
        });
        var counting = new ReadCountingFileSystem(harness.Fs);
        var expected = new byte[size];
        var volume = await RafVolume.OpenAsync(counting, harness.Catalog, RafHarness.Volume, harness.Options, harness.Logger, CancellationToken.None);
        for (var offset = 0; offset < size; offset += block)
        {
            var data = RafHarness.Pattern(block, offset);
            data.CopyTo(expected, offset);
            await volume.WriteAsync(offset, data, fua: false);
        }
        // Every other block dies: each sealed segment keeps dozens of separate 4 KiB extents.
        for (var offset = 0; offset < size; offset += 2 * block)
        {
            Array.Clear(expected, offset, block);
            await volume.TrimAsync(offset, block);
        }
        var liveExtents = size / block / 2;

        counting.Reads = 0;
        var result = await volume.RunGcOnceAsync();
        var gcReads = counting.Reads;

        output.WriteLine($"{result}; {gcReads} reads for up to {liveExtents} live extents");
        Assert.True(result.SegmentsCollected >= 2, $"GC collected {result.SegmentsCollected} segments");
        Assert.True(result.BytesRewritten >= result.SegmentsCollected * 16L * block, $"GC rewrote only {result.BytesRewritten} bytes");
        Assert.True(gcReads * 8 < result.BytesRewritten / block, $"{gcReads} reads to move {result.BytesRewritten / block} extents");
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after GC");
        await volume.CrashForTestAsync();
        await using var recovered = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(recovered), "after GC and crash recovery");
    }

    /// <summary>Passes everything to a file system and counts reads of opened files.</summary>
    private sealed class ReadCountingFileSystem(IPanguFileSystem inner) : IPanguFileSystem
    {
        private int _reads;

        public int Reads { get => Volatile.Read(ref _reads); set => Volatile.Write(ref _reads, value); }

        public Task<PanguFileInfo> CreateAsync(string path, int replicas = 0, PanguVolumeGuard? guard = null, CancellationToken ct = default) => inner.CreateAsync(path, replicas, guard, ct);

        public Task<IPanguAppender> OpenForAppendAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default) => inner.OpenForAppendAsync(path, guard, ct);

        public async Task<IPanguReader> OpenForReadAsync(string path, CancellationToken ct = default) => new CountingReader(await inner.OpenForReadAsync(path, ct), this);

        public Task<PanguFileInfo?> StatAsync(string path, CancellationToken ct = default) => inner.StatAsync(path, ct);

        public Task<IReadOnlyList<PanguDirectoryEntry>> ListAsync(string directory, bool recursive = false, CancellationToken ct = default) => inner.ListAsync(directory, recursive, ct);

        public Task RenameAsync(string from, string to, CancellationToken ct = default) => inner.RenameAsync(from, to, ct);

        public Task DeleteAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default) => inner.DeleteAsync(path, guard, ct);

        private sealed class CountingReader(IPanguReader inner, ReadCountingFileSystem owner) : IPanguReader
        {
            public string Path => inner.Path;

            public long Length => inner.Length;

            public Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
            {
                Interlocked.Increment(ref owner._reads);
                return inner.ReadAsync(offset, buffer, ct);
            }

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

    [Fact]
    public async Task GcIsPacedByItsBandwidthBudget()
    {
        var o = RafHarness.SmallOptions();
        var harness = new RafHarness(output, 1 << 20, new RafOptions
        {
            SegmentSizeBytes = o.SegmentSizeBytes,
            MaxRecordDataBytes = o.MaxRecordDataBytes,
            MaxBatchBytes = o.MaxBatchBytes,
            GcLiveThreshold = 0.99,
            GcBandwidthBytesPerSecond = 1 << 20,
            GcInterval = null,
        });
        await using var volume = await harness.OpenAsync();
        // Half of each segment stays live: 256 KiB of live data to rewrite, at 2 tokens per byte.
        for (var i = 0; i < 32; i++)
        {
            await volume.WriteAsync(i * Chunk, RafHarness.Pattern(Chunk, i), fua: false);
        }
        for (var i = 0; i < 32; i += 2)
        {
            await volume.TrimAsync(i * Chunk, Chunk);
        }
        var watch = Stopwatch.StartNew();
        var result = await volume.RunGcOnceAsync();
        output.WriteLine($"{result} in {watch.Elapsed}");
        Assert.True(result.BytesRewritten >= 200 << 10);
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(0.3), $"GC rewrote {result.BytesRewritten} bytes in {watch.Elapsed} despite a 1 MiB/s budget");
    }

    [Fact]
    public async Task BackgroundGcReclaimsSpace()
    {
        var o = RafHarness.SmallOptions();
        var harness = new RafHarness(output, 256 << 10, new RafOptions
        {
            SegmentSizeBytes = o.SegmentSizeBytes,
            MaxRecordDataBytes = o.MaxRecordDataBytes,
            MaxBatchBytes = o.MaxBatchBytes,
            GcBandwidthBytesPerSecond = 0,
            GcInterval = TimeSpan.FromMilliseconds(20),
        });
        await using var volume = await harness.OpenAsync();
        for (var pass = 0; pass < 6; pass++)
        {
            for (var i = 0; i < 16; i++)
            {
                await volume.WriteAsync(i * Chunk, RafHarness.Pattern(Chunk, (pass * 100) + i), fua: false);
            }
        }
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (await harness.SpaceUsedAsync() >= 2L * volume.Size && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        Assert.True(await harness.SpaceUsedAsync() < 2L * volume.Size);
        var read = new byte[volume.Size];
        await volume.ReadAsync(0, read);
        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(RafHarness.Pattern(Chunk, 500 + i), read[(i * Chunk)..((i + 1) * Chunk)]);
        }
    }
}
