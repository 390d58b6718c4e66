using FeitianK8s.Core.Block;
using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class RafVolumeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task NeverWrittenRangesReadZeros()
    {
        var harness = new RafHarness(output);
        await using var volume = await harness.OpenAsync();
        await volume.WriteAsync(4096, RafHarness.Pattern(100, 1), fua: false);
        var read = new byte[8192];
        await volume.ReadAsync(0, read);
        Assert.All(read[..4096], b => Assert.Equal(0, b));
        Assert.Equal(RafHarness.Pattern(100, 1), read[4096..4196]);
        Assert.All(read[4196..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task ReopenAfterCleanCloseLoadsCheckpointWithoutReplay()
    {
        var harness = new RafHarness(output);
        var expected = new byte[(await harness.Catalog.StatAsync(RafHarness.Volume)).SizeBytes];
        await using (var volume = await harness.OpenAsync())
        {
            for (var i = 0; i < 40; i++)
            {
                var data = RafHarness.Pattern(7000 + i, i);
                var offset = (i * 13_001) % (expected.Length - data.Length);
                data.CopyTo(expected, offset);
                await volume.WriteAsync(offset, data, fua: false);
            }
        }
        await using (var volume = await harness.OpenAsync())
        {
            Assert.NotNull(volume.Recovery.CheckpointSeq);
            Assert.Equal(0, volume.Recovery.ReplayedRecords);
            RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after clean reopen");
        }
    }

    [Fact]
    public async Task CrashWithTornLastRecordRecoversEveryAcknowledgedWrite()
    {
        var harness = new RafHarness(output);
        var size = (int)(await harness.Catalog.StatAsync(RafHarness.Volume)).SizeBytes;
        var expected = new byte[size];
        var volume = await harness.OpenAsync();
        for (var i = 0; i < 30; i++)
        {
            var data = RafHarness.Pattern(3000, 100 + i);
            data.CopyTo(expected, i * 2000);
            await volume.WriteAsync(i * 2000, data, fua: false);
        }
        await volume.CrashForTestAsync();
        Assert.Empty(await harness.CheckpointsAsync());

        // The crashed engine was in the middle of appending a record: only a prefix landed.
        var lastSegment = (await harness.SegmentsAsync())[^1];
        var torn = RafHarness.Pattern(5000, 999);
        var record = new byte[RafRecordHeader.Size + torn.Length];
        RafRecordHeader.ForData(RafRecordKind.Write, 1_000_000, 0, torn).Write(record);
        torn.CopyTo(record, RafRecordHeader.Size);
        harness.Fs.AppendPartialForTest(lastSegment, record.AsSpan(0, RafRecordHeader.Size + 1234));

        volume = await harness.OpenAsync();
        Assert.Null(volume.Recovery.CheckpointSeq);
        Assert.Equal(30, volume.Recovery.ReplayedRecords);
        Assert.Equal(RafRecordHeader.Size + 1234, volume.Recovery.TornBytes);
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(volume), "after recovery past a torn record");

        // New writes must not follow the torn bytes: they go to a new segment and survive the next crash.
        var more = RafHarness.Pattern(4096, 7);
        more.CopyTo(expected, 100_000);
        await volume.WriteAsync(100_000, more, fua: false);
        Assert.DoesNotContain(lastSegment, (await harness.SegmentsAsync())[^1..]);
        await volume.CrashForTestAsync();
        await using var reopened = await harness.OpenAsync();
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(reopened), "after a second crash");
    }

    [Fact]
    public async Task CrashInTheMiddleOfAWorkloadKeepsEveryAcknowledgedWriteAndNoHalfRecord()
    {
        const int slot = 4096;
        var harness = new RafHarness(output);
        harness.Fs.AppendLatency = TimeSpan.FromMilliseconds(1);
        var slots = (int)(await harness.Catalog.StatAsync(RafHarness.Volume)).SizeBytes / slot;
        var volume = await harness.OpenAsync();
        var acknowledged = new bool[slots];
        var ackedSoFar = 0;
        // Event-driven, not timed: the writer whose acknowledgement reaches a quarter of the slots
        // asks for the crash, and no writer starts a write past half of them until the crash has
        // landed, so the crash always comes in the middle of the workload however slow the machine.
        var crashDue = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var crashed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (var i = w; i < slots; i += 8)
            {
                if (Volatile.Read(ref ackedSoFar) >= slots / 2)
                {
                    await crashed.Task;
                }
                try
                {
                    await volume.WriteAsync((long)i * slot, RafHarness.Pattern(slot, i), fua: false);
                    acknowledged[i] = true;
                    if (Interlocked.Increment(ref ackedSoFar) >= slots / 4)
                    {
                        crashDue.TrySetResult();
                    }
                }
                catch (FeitianK8s.Core.Block.BlockDeviceException)
                {
                    return;
                }
            }
        })).ToList();
        var all = Task.WhenAll(writers);
        await Task.WhenAny(crashDue.Task, all).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(crashDue.Task.IsCompleted, $"the writers ended after {Volatile.Read(ref ackedSoFar)} acknowledgements without reaching a quarter of {slots}");
        await volume.CrashForTestAsync();
        crashed.TrySetResult();
        await all;
        var acked = acknowledged.Count(a => a);
        output.WriteLine($"{acked} of {slots} writes acknowledged before the crash");
        Assert.InRange(acked, slots / 4, slots - 1);

        await using var recovered = await harness.OpenAsync();
        var contents = await RafHarness.ReadAllAsync(recovered);
        var landedUnacknowledged = 0;
        for (var i = 0; i < slots; i++)
        {
            var actual = contents.AsSpan(i * slot, slot);
            if (acknowledged[i])
            {
                Assert.True(actual.SequenceEqual(RafHarness.Pattern(slot, i)), $"acknowledged write {i} lost");
            }
            else if (actual.SequenceEqual(RafHarness.Pattern(slot, i)))
            {
                landedUnacknowledged++;
            }
            else
            {
                Assert.True(actual.IndexOfAnyExcept((byte)0) < 0, $"unacknowledged write {i} is half applied");
            }
        }
        output.WriteLine($"{landedUnacknowledged} unacknowledged writes had landed");
    }

    [Fact]
    public async Task TornHeaderAloneIsIgnored()
    {
        var harness = new RafHarness(output);
        var volume = await harness.OpenAsync();
        await volume.WriteAsync(0, RafHarness.Pattern(512, 1), fua: false);
        await volume.CrashForTestAsync();
        harness.Fs.AppendPartialForTest((await harness.SegmentsAsync())[^1], RafHarness.Pattern(17, 2));
        await using var reopened = await harness.OpenAsync();
        Assert.Equal(17, reopened.Recovery.TornBytes);
        var read = new byte[512];
        await reopened.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(512, 1), read);
    }

    [Fact]
    public async Task RecoveryLoadsCheckpointAndReplaysOnlyTheTail()
    {
        var harness = new RafHarness(output);
        var size = (int)(await harness.Catalog.StatAsync(RafHarness.Volume)).SizeBytes;
        var expected = new byte[size];
        var volume = await harness.OpenAsync();
        for (var i = 0; i < 10; i++)
        {
            var data = RafHarness.Pattern(10_000, i);
            data.CopyTo(expected, i * 9_000);
            await volume.WriteAsync(i * 9_000, data, fua: false);
        }
        await volume.TrimAsync(5_000, 3_000);
        Array.Clear(expected, 5_000, 3_000);
        var checkpointSeq = await volume.CheckpointAsync();

        for (var i = 0; i < 5; i++)
        {
            var data = RafHarness.Pattern(1_000, 50 + i);
            data.CopyTo(expected, 20_000 + (i * 700));
            await volume.WriteAsync(20_000 + (i * 700), data, fua: false);
        }
        await volume.WriteZeroesAsync(40_000, 2_000, fua: false);
        Array.Clear(expected, 40_000, 2_000);
        await volume.CrashForTestAsync();

        await using var reopened = await harness.OpenAsync();
        Assert.Equal(checkpointSeq, reopened.Recovery.CheckpointSeq);
        Assert.Equal(6, reopened.Recovery.ReplayedRecords);
        RafHarness.AssertSameBytes(expected, await RafHarness.ReadAllAsync(reopened), "checkpoint + tail");
    }

    [Theory]
    [InlineData(32)]
    [InlineData(0)]
    public async Task A_fragmented_index_stretches_the_periodic_checkpoint_interval_to_a_multiple_of_the_checkpoint_size(int factor)
    {
        // 4 KiB writes to every other block: each is an extent of its own, so a checkpoint grows by 40 bytes per write.
        var options = RafHarness.SmallOptions();
        var harness = new RafHarness(output, size: 4 << 20, new RafOptions
        {
            SegmentSizeBytes = options.SegmentSizeBytes,
            MaxRecordDataBytes = options.MaxRecordDataBytes,
            MaxBatchBytes = options.MaxBatchBytes,
            CheckpointIntervalBytes = 64 << 10,
            CheckpointSizeFactor = factor,
            GcBandwidthBytesPerSecond = 0,
            GcInterval = null,
            Holder = options.Holder,
        });
        await using var volume = await harness.OpenAsync();
        Assert.Equal(64 << 10, volume.PeriodicCheckpointInterval);
        const int writes = 512;
        for (var i = 0; i < writes; i++)
        {
            await volume.WriteAsync(i * 8192L, RafHarness.Pattern(4096, i), fua: false);
        }
        var checkpointBytes = RafCheckpoint.SerializedSize(writes);
        Assert.Equal(factor == 0 ? 64 << 10 : factor * checkpointBytes, volume.PeriodicCheckpointInterval);
        // What is written is all there, whatever the checkpoints did meanwhile.
        var read = new byte[4096];
        for (var i = 0; i < writes; i += 37)
        {
            await volume.ReadAsync(i * 8192L, read);
            Assert.Equal(RafHarness.Pattern(4096, i), read);
        }
        await volume.BackgroundCheckpoint;
    }

    [Fact]
    public void A_negative_checkpoint_size_factor_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new RafOptions { CheckpointSizeFactor = -1 }.Validate());
        Assert.Contains("checkpoint", error.Message);
    }

    [Fact]
    public async Task CheckpointsAreWrittenPeriodicallyAndPruned()
    {
        var harness = new RafHarness(output);
        var volume = await harness.OpenAsync();
        for (var i = 0; i < 64; i++)
        {
            await volume.WriteAsync(i * 16384 % (512 << 10), RafHarness.Pattern(16384, i), fua: false);
        }
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((await harness.CheckpointsAsync()).Count == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        Assert.NotEmpty(await harness.CheckpointsAsync());
        await volume.DisposeAsync();
        var checkpoints = await harness.CheckpointsAsync();
        output.WriteLine(string.Join(", ", checkpoints));
        Assert.InRange(checkpoints.Count, 1, harness.Options.CheckpointsToKeep);
    }

    [Fact]
    public async Task CorruptNewestCheckpointFallsBackToOlderOne()
    {
        var harness = new RafHarness(output);
        var volume = await harness.OpenAsync();
        await volume.WriteAsync(0, RafHarness.Pattern(4096, 1), fua: false);
        await volume.CheckpointAsync();
        await volume.WriteAsync(8192, RafHarness.Pattern(4096, 2), fua: false);
        var newest = await volume.CheckpointAsync();
        await volume.WriteAsync(16384, RafHarness.Pattern(4096, 3), fua: false);
        await volume.CrashForTestAsync();

        var newestPath = new RafLayout(harness.Directory).CheckpointPath(newest);
        harness.Fs.CorruptForTest(newestPath, 40, [0xde, 0xad]);

        await using var reopened = await harness.OpenAsync();
        Assert.NotNull(reopened.Recovery.CheckpointSeq);
        Assert.True(reopened.Recovery.CheckpointSeq < newest);
        Assert.DoesNotContain(newestPath, await harness.CheckpointsAsync());
        var read = new byte[3 * 8192];
        await reopened.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(4096, 1), read[..4096]);
        Assert.Equal(RafHarness.Pattern(4096, 2), read[8192..12288]);
        Assert.Equal(RafHarness.Pattern(4096, 3), read[16384..20480]);
    }

    [Fact]
    public async Task SecondEngineFencesFirstAndDataStaysConsistent()
    {
        var harness = new RafHarness(output);
        var first = await harness.OpenAsync();
        await first.WriteAsync(0, RafHarness.Pattern(8192, 1), fua: false);

        var second = await harness.OpenAsync();
        var error = await Assert.ThrowsAsync<BlockDeviceException>(() => first.WriteAsync(4096, RafHarness.Pattern(4096, 66), fua: false).AsTask());
        Assert.Equal(BlockErrorKind.Fenced, error.Kind);
        var again = await Assert.ThrowsAsync<BlockDeviceException>(() => first.TrimAsync(0, 4096).AsTask());
        Assert.Equal(BlockErrorKind.Fenced, again.Kind);
        var flush = await Assert.ThrowsAsync<BlockDeviceException>(() => first.FlushAsync().AsTask());
        Assert.Equal(BlockErrorKind.Fenced, flush.Kind);
        // Once it knows it is fenced, the old engine does not serve its possibly stale index either.
        var staleRead = await Assert.ThrowsAsync<BlockDeviceException>(() => first.ReadAsync(0, new byte[4096]).AsTask());
        Assert.Equal(BlockErrorKind.Fenced, staleRead.Kind);

        var read = new byte[8192];
        await second.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(8192, 1), read);
        await second.WriteAsync(8192, RafHarness.Pattern(4096, 2), fua: true);
        await first.DisposeAsync();
        await second.DisposeAsync();

        await using var third = await harness.OpenAsync();
        read = new byte[12288];
        await third.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(8192, 1), read[..8192]);
        Assert.Equal(RafHarness.Pattern(4096, 2), read[8192..]);
    }

    [Fact]
    public async Task ReadOnlyEngineReadsAcknowledgedWritesWithoutFencingTheWriter()
    {
        var harness = new RafHarness(output);
        await using var writer = await harness.OpenAsync();
        // Enough to roll segments and write a checkpoint, plus an unsealed head after it.
        for (var i = 0; i < 80; i++)
        {
            await writer.WriteAsync(i % 64 * 4096L, RafHarness.Pattern(4096, i), fua: false);
        }
        await writer.FlushAsync();
        // The writer's own periodic checkpoint (started by the writes above) must be over before the files are listed.
        await writer.BackgroundCheckpoint;
        var expected = await RafHarness.ReadAllAsync(writer);
        var epoch = harness.Catalog.EpochOf(RafHarness.Volume);
        var segments = await harness.SegmentsAsync();
        var checkpoints = await harness.CheckpointsAsync();

        await using (var reader = await RafVolume.OpenReadOnlyAsync(harness.Fs, harness.Catalog, RafHarness.Volume, harness.Options, harness.Logger, CancellationToken.None))
        {
            Assert.True(reader.ReadOnly);
            Assert.Equal(expected, await RafHarness.ReadAllAsync(reader));
            foreach (var refused in new Func<Task>[]
            {
                () => reader.WriteAsync(0, new byte[4096], fua: false).AsTask(),
                () => reader.TrimAsync(0, 4096).AsTask(),
                () => reader.WriteZeroesAsync(0, 4096, fua: true).AsTask(),
                () => reader.CheckpointAsync(),
                () => reader.RunGcOnceAsync(),
            })
            {
                Assert.Equal(BlockErrorKind.ReadOnly, (await Assert.ThrowsAsync<BlockDeviceException>(refused)).Kind);
            }
            await reader.FlushAsync();
            Assert.Equal(expected, await RafHarness.ReadAllAsync(reader));
        }

        // The writer kept its lease and its head segment: it writes on, and nothing was sealed, deleted or checkpointed for the reader.
        Assert.Equal(epoch, harness.Catalog.EpochOf(RafHarness.Volume));
        Assert.Equal(segments, await harness.SegmentsAsync());
        Assert.Equal(checkpoints, await harness.CheckpointsAsync());
        await writer.WriteAsync(0, RafHarness.Pattern(4096, 999), fua: true);
        var read = new byte[4096];
        await writer.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(4096, 999), read);
    }

    [Fact]
    public async Task FencedEngineCannotWriteCheckpointsOrCollect()
    {
        var harness = new RafHarness(output);
        var first = await harness.OpenAsync();
        await first.WriteAsync(0, RafHarness.Pattern(4096, 1), fua: false);
        await using var second = await harness.OpenAsync();
        var checkpoint = await Assert.ThrowsAsync<BlockDeviceException>(() => first.CheckpointAsync());
        Assert.Equal(BlockErrorKind.Fenced, checkpoint.Kind);
        Assert.Empty(await harness.CheckpointsAsync());
        await first.DisposeAsync();
        Assert.Empty(await harness.CheckpointsAsync());
    }

    [Fact]
    public async Task FlushAndFuaReachTheFileSystem()
    {
        var harness = new RafHarness(output);
        await using var volume = await harness.OpenAsync();
        var flushes = harness.Fs.FlushCount;
        await volume.WriteAsync(0, RafHarness.Pattern(4096, 1), fua: false);
        Assert.Equal(flushes, harness.Fs.FlushCount);
        await volume.FlushAsync();
        Assert.Equal(flushes + 1, harness.Fs.FlushCount);

        await volume.WriteAsync(4096, RafHarness.Pattern(4096, 2), fua: true);
        Assert.Equal(flushes + 2, harness.Fs.FlushCount);
        await volume.WriteZeroesAsync(0, 4096, fua: true);
        Assert.Equal(flushes + 3, harness.Fs.FlushCount);
        await volume.WriteZeroesAsync(0, 4096, fua: false);
        await volume.TrimAsync(0, 4096);
        Assert.Equal(flushes + 3, harness.Fs.FlushCount);
    }

    [Fact]
    public async Task ConcurrentWritesAreGroupCommittedAndAcknowledgedOnlyAfterTheAppend()
    {
        var options = RafHarness.SmallOptions();
        var harness = new RafHarness(output, options: new RafOptions
        {
            SegmentSizeBytes = 4 << 20,
            MaxBatchBytes = 1 << 20,
            MaxRecordDataBytes = options.MaxRecordDataBytes,
            GcInterval = null,
        });
        await using var volume = await harness.OpenAsync();
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        harness.Fs.AppendHold = hold.Task;
        var writes = Enumerable.Range(0, 64).Select(i => volume.WriteAsync(i * 4096, RafHarness.Pattern(4096, i), fua: false).AsTask()).ToList();

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (harness.Fs.AppendCount == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }
        Assert.Equal(1, harness.Fs.AppendCount);
        Assert.All(writes, w => Assert.False(w.IsCompleted));
        // The first batch is in the file system but not acknowledged: the index must not point at it yet.
        var early = new byte[4096];
        await volume.ReadAsync(0, early);
        Assert.All(early, b => Assert.Equal(0, b));

        harness.Fs.AppendHold = null;
        hold.SetResult();
        await Task.WhenAll(writes);
        Assert.True(harness.Fs.AppendCount <= 2, $"64 queued writes took {harness.Fs.AppendCount} appends");
        var read = new byte[64 * 4096];
        await volume.ReadAsync(0, read);
        for (var i = 0; i < 64; i++)
        {
            Assert.Equal(RafHarness.Pattern(4096, i), read[(i * 4096)..((i + 1) * 4096)]);
        }
    }

    [Fact]
    public async Task FailedAppendFailsOnlyItsWritesAndTheLogStaysRecoverable()
    {
        var harness = new RafHarness(output);
        var volume = await harness.OpenAsync();
        await volume.WriteAsync(0, RafHarness.Pattern(4096, 1), fua: false);
        harness.Fs.FailNextAppends(1, $"{harness.Directory}/log/");
        var error = await Assert.ThrowsAsync<BlockDeviceException>(() => volume.WriteAsync(4096, RafHarness.Pattern(4096, 2), fua: false).AsTask());
        Assert.Equal(BlockErrorKind.Io, error.Kind);
        var before = (await harness.SegmentsAsync()).Count;
        await volume.WriteAsync(8192, RafHarness.Pattern(4096, 3), fua: false);
        Assert.Equal(before + 1, (await harness.SegmentsAsync()).Count);
        await volume.CrashForTestAsync();

        await using var reopened = await harness.OpenAsync();
        var read = new byte[12288];
        await reopened.ReadAsync(0, read);
        Assert.Equal(RafHarness.Pattern(4096, 1), read[..4096]);
        Assert.All(read[4096..8192], b => Assert.Equal(0, b));
        Assert.Equal(RafHarness.Pattern(4096, 3), read[8192..]);
    }

    [Fact]
    public async Task ReadsAcrossManySegmentsWithATinyReaderCache()
    {
        var harness = new RafHarness(output, 1 << 20, new RafOptions
        {
            SegmentSizeBytes = 16 << 10,
            MaxRecordDataBytes = 4096,
            ReaderCacheSize = 2,
            GcInterval = null,
        });
        var expected = new byte[1 << 20];
        var random = new Random(11);
        await using var volume = await harness.OpenAsync();
        for (var i = 0; i < 200; i++)
        {
            var offset = random.Next(expected.Length - 9000);
            var data = RafHarness.Pattern(random.Next(1, 9000), i);
            data.CopyTo(expected, offset);
            await volume.WriteAsync(offset, data, fua: false);
        }
        Assert.True((await harness.SegmentsAsync()).Count > 20);
        var reads = Enumerable.Range(0, 16).Select(async r =>
        {
            var bytes = new byte[expected.Length];
            await volume.ReadAsync(0, bytes);
            return bytes;
        });
        foreach (var bytes in await Task.WhenAll(reads))
        {
            RafHarness.AssertSameBytes(expected, bytes, "parallel full reads");
        }
    }

    [Fact]
    public async Task WritesLargerThanOneRecordAreSplitAndReadBack()
    {
        var harness = new RafHarness(output);
        var data = RafHarness.Pattern(100_000, 5);
        var volume = await harness.OpenAsync();
        await volume.WriteAsync(333, data, fua: false);
        await volume.CrashForTestAsync();
        await using var reopened = await harness.OpenAsync();
        Assert.Equal(7, reopened.Recovery.ReplayedRecords);
        var read = new byte[data.Length];
        await reopened.ReadAsync(333, read);
        Assert.Equal(data, read);
    }

    [Theory]
    [InlineData(-1, 10)]
    [InlineData(0, (1 << 20) + 1)]
    [InlineData((1 << 20) - 10, 11)]
    [InlineData(1 << 20, 1)]
    [InlineData((1L << 20) + 4096, 4096)]
    public async Task OutOfRangeRequestsAreRefusedAndChangeNothing(long offset, int length)
    {
        var harness = new RafHarness(output);
        await using var volume = await harness.OpenAsync();
        await volume.WriteAsync(0, RafHarness.Pattern(4096, 1), fua: false);
        var logBefore = volume.GetStats().LogBytes;

        var write = await Assert.ThrowsAsync<BlockDeviceException>(() => volume.WriteAsync(offset, new byte[length], fua: false).AsTask());
        Assert.Equal(BlockErrorKind.InvalidArgument, write.Kind);
        var read = await Assert.ThrowsAsync<BlockDeviceException>(() => volume.ReadAsync(offset, new byte[length]).AsTask());
        Assert.Equal(BlockErrorKind.InvalidArgument, read.Kind);
        var trim = await Assert.ThrowsAsync<BlockDeviceException>(() => volume.TrimAsync(offset, length).AsTask());
        Assert.Equal(BlockErrorKind.InvalidArgument, trim.Kind);
        var zero = await Assert.ThrowsAsync<BlockDeviceException>(() => volume.WriteZeroesAsync(offset, length, fua: false).AsTask());
        Assert.Equal(BlockErrorKind.InvalidArgument, zero.Kind);

        Assert.Equal(logBefore, volume.GetStats().LogBytes);
        var check = new byte[4096];
        await volume.ReadAsync(0, check);
        Assert.Equal(RafHarness.Pattern(4096, 1), check);
    }

    [Fact]
    public async Task RefreshSizeAllowsWritesInTheGrownRange()
    {
        var harness = new RafHarness(output);
        await using var volume = await harness.OpenAsync();
        var beyond = volume.Size;
        await Assert.ThrowsAsync<BlockDeviceException>(() => volume.WriteAsync(beyond, new byte[4096], fua: false).AsTask());
        harness.Catalog.Resize(RafHarness.Volume, beyond * 2);
        Assert.Equal(beyond * 2, await volume.RefreshSizeAsync());
        await volume.WriteAsync(beyond, RafHarness.Pattern(4096, 9), fua: false);
        var read = new byte[4096];
        await volume.ReadAsync(beyond, read);
        Assert.Equal(RafHarness.Pattern(4096, 9), read);
    }

    [Fact]
    public async Task OpeningAnUnknownVolumeFailsWithNotFound()
    {
        var harness = new RafHarness(output);
        var error = await Assert.ThrowsAsync<FeitianK8s.Core.Pangu.PanguException>(() =>
            RafVolume.OpenAsync(harness.Fs, harness.Catalog, "nope", harness.Options, harness.Logger, CancellationToken.None));
        Assert.Equal(FeitianK8s.Core.Pangu.PanguErrorKind.NotFound, error.Kind);
    }
}
