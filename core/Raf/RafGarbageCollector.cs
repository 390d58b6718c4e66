using FeitianK8s.Core.Block;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

public sealed record RafGcResult(int SegmentsCollected, long BytesRewritten, long BytesFreed);

/// <summary>
/// Reclaims log space. A pass picks sealed segments whose live fraction fell under
/// <see cref="RafOptions.GcLiveThreshold"/>, rewrites their live extents at the log head
/// as Relocate records (each lands only where the index still points at the old
/// location, so a concurrent overwrite or trim wins), writes a checkpoint and deletes
/// every older checkpoint (so recovery never needs the segment, and never replays from
/// before a trim the segment held), then deletes the segment once no read uses it.
/// Live extents are read in windows that span small dead gaps (<see cref="GcReadPlan"/>); reads
/// and rewrites are paced by a token bucket. Segments that snapshots or clones still reference
/// (<see cref="RafSegmentPins"/>) are never picked: their space is freed by the first pass after
/// the last reference is gone. Snapshots are taken inside
/// <see cref="RunExclusiveAsync{T}"/>, so a pass never misses a snapshot made while it runs.
/// </summary>
public sealed class RafGarbageCollector(
    IPanguFileSystem fs, RafLayout layout, RafVolumeState state, PanguVolumeGuard guard, RafLogWriter writer,
    RafCheckpointer checkpointer, SegmentReaderCache readers, RafOptions options, RafMetrics metrics, ILogger logger)
{
    /// <summary>Dead bytes between two live extents that one GC read still spans (see <see cref="GcReadPlan"/>).</summary>
    private const int ReadGapBytes = 256 << 10;

    /// <summary>Largest GC read of a victim segment.</summary>
    private const int ReadWindowBytes = 4 << 20;

    private readonly SemaphoreSlim _pass = new(1, 1);
    private readonly TokenBucket _budget = new(options.GcBandwidthBytesPerSecond, Math.Max(options.GcBandwidthBytesPerSecond / 10, options.MaxRecordDataBytes));

    public async Task<RafGcResult> RunOnceAsync(CancellationToken ct)
    {
        await _pass.WaitAsync(ct);
        try
        {
            return await CollectAsync(ct);
        }
        catch (FencedException e)
        {
            writer.MarkFenced();
            throw new BlockDeviceException(BlockErrorKind.Fenced, $"volume {guard.Volume}: fenced during GC", e);
        }
        finally
        {
            _pass.Release();
        }
    }

    /// <summary>Runs <paramref name="action"/> while no GC pass runs (taking a snapshot).</summary>
    public async Task<T> RunExclusiveAsync<T>(Func<Task<T>> action, CancellationToken ct)
    {
        await _pass.WaitAsync(ct);
        try
        {
            return await action();
        }
        finally
        {
            _pass.Release();
        }
    }

    private async Task<RafGcResult> CollectAsync(CancellationToken ct)
    {
        if (HeadIsMostlyDead())
        {
            await writer.SealHeadAsync();
        }
        var victims = PickVictims();
        if (victims.Count == 0)
        {
            return new RafGcResult(0, 0, 0);
        }
        var pinned = await RafSegmentPins.CountAsync(fs, layout, logger, ct);
        if (pinned is null)
        {
            return new RafGcResult(0, 0, 0);
        }
        victims.RemoveAll(pinned.ContainsKey);
        if (victims.Count == 0)
        {
            return new RafGcResult(0, 0, 0);
        }
        long rewritten = 0;
        foreach (var segment in victims)
        {
            rewritten += await RelocateLiveDataAsync(segment, ct);
        }
        var emptied = new List<ulong>();
        lock (state.Gate)
        {
            emptied.AddRange(victims.Where(s => state.Index.LiveBytes(s) == 0));
        }
        if (emptied.Count == 0)
        {
            return new RafGcResult(0, rewritten, 0);
        }
        await checkpointer.WriteAsync(writer.FlushAsync, pruneAllOlder: true, ct);
        long freed = 0;
        foreach (var segment in emptied)
        {
            await WaitForReadsAsync(segment, ct);
            readers.Invalidate(segment);
            await RafLayout.DeleteIfExistsAsync(fs, layout.SegmentPath(segment), guard, ct);
            lock (state.Gate)
            {
                freed += state.SegmentLengths[segment];
                state.SegmentLengths.Remove(segment);
                metrics.UpdateSpace(state);
            }
            metrics.GcDeleted.Inc();
        }
        logger.LogInformation("Volume {Volume}: GC collected {Segments} segments, rewrote {Rewritten} live bytes, freed {Freed} bytes",
            guard.Volume, emptied.Count, rewritten, freed);
        return new RafGcResult(emptied.Count, rewritten, freed);
    }

    private bool HeadIsMostlyDead()
    {
        lock (state.Gate)
        {
            if (state.Head is not { } head)
            {
                return false;
            }
            var length = state.SegmentLengths.GetValueOrDefault(head.Segment);
            return length >= options.GcSealHeadMinBytes && state.Index.LiveBytes(head.Segment) < options.GcLiveThreshold * length;
        }
    }

    /// <summary>
    /// Sealed segments (never the head) under the live threshold, emptiest first. A segment numbered
    /// after the applied position is being rolled in (the writer registers it before it becomes the
    /// head): it is empty but about to take writes, so it is never picked.
    /// </summary>
    private List<ulong> PickVictims()
    {
        lock (state.Gate)
        {
            var head = state.Head?.Segment;
            var applied = state.Applied.Segment;
            return state.SegmentLengths
                .Where(s => s.Key != head && s.Key <= applied && (s.Value == 0 || state.Index.LiveBytes(s.Key) < options.GcLiveThreshold * s.Value))
                .OrderBy(s => s.Value == 0 ? 0 : (double)state.Index.LiveBytes(s.Key) / s.Value)
                .Select(s => s.Key)
                .ToList();
        }
    }

    private async Task<long> RelocateLiveDataAsync(ulong segment, CancellationToken ct)
    {
        List<Extent> extents;
        lock (state.Gate)
        {
            extents = state.Index.ExtentsIn(segment);
        }
        long moved = 0;
        var pending = new List<LogOp>();
        long pendingBytes = 0;
        foreach (var window in GcReadPlan.Build(extents, ReadWindowBytes, options.MaxRecordDataBytes, ReadGapBytes))
        {
            await _budget.TakeAsync(window.Length + window.LiveBytes, ct);
            // Each Relocate op keeps a slice of this buffer until the log acknowledges it.
            var data = new byte[window.Length];
            await readers.UseAsync(segment, async reader =>
            {
                await RafVolume.ReadFullyAsync(reader.ReadAsync, segment, window.Offset, data, ct);
                return 0;
            });
            foreach (var piece in window.Pieces)
            {
                var bytes = data.AsMemory((int)(piece.DataOffset - window.Offset), piece.Length);
                var op = new LogOp(LogOpKind.Relocate, piece.Start, piece.Length, bytes, sourceSegment: segment, sourceOffset: piece.DataOffset);
                pending.Add(op);
                _ = writer.SubmitAsync(op);
            }
            pendingBytes += window.Length;
            if (pendingBytes >= options.MaxBatchBytes)
            {
                moved += await DrainAsync(pending);
                pendingBytes = 0;
            }
        }
        moved += await DrainAsync(pending);
        metrics.GcRewritten.Inc(moved);
        return moved;
    }

    private static async Task<long> DrainAsync(List<LogOp> pending)
    {
        await Task.WhenAll(pending.Select(op => op.Done.Task));
        var moved = pending.Sum(op => op.Relocated);
        pending.Clear();
        return moved;
    }

    private async Task WaitForReadsAsync(ulong segment, CancellationToken ct)
    {
        while (true)
        {
            lock (state.Gate)
            {
                if (state.ReadsInFlight.GetValueOrDefault(segment) == 0)
                {
                    state.ReadsInFlight.Remove(segment);
                    return;
                }
            }
            await Task.Delay(1, ct);
        }
    }
}
