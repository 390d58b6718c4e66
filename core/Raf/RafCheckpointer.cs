using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// Writes checkpoints (one at a time) and prunes old ones. A checkpoint is written only
/// after the log up to its position was flushed, so it never names bytes that are not
/// durable. After GC, every older checkpoint is deleted before any segment is, so no
/// remaining checkpoint can point into a deleted segment or skip a deleted trim.
/// </summary>
public sealed class RafCheckpointer(
    IPanguFileSystem fs, RafLayout layout, RafVolumeState state, PanguVolumeGuard guard, int replicas,
    RafOptions options, RafMetrics metrics, ILogger logger)
{
    private const int AppendPieceBytes = 4 << 20;
    private readonly SemaphoreSlim _lock = new(1, 1);

    /// <summary>Seq of the newest checkpoint known to be valid (written or loaded).</summary>
    public ulong? LastSeq { get; set; }

    /// <returns>The sequence number the newest checkpoint covers.</returns>
    public async Task<ulong> WriteAsync(Func<Task> flushLog, bool pruneAllOlder, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            RafCheckpoint checkpoint;
            lock (state.Gate)
            {
                checkpoint = new RafCheckpoint(state.Applied, state.Index.Snapshot());
            }
            var seq = checkpoint.Position.Seq;
            if (LastSeq != seq)
            {
                await flushLog();
                await WriteFileAsync(layout.CheckpointPath(seq), checkpoint.Serialize(), ct);
                LastSeq = seq;
                metrics.CheckpointsTotal.Inc();
                logger.LogInformation("Volume {Volume}: checkpoint {Seq} written at segment {Segment} offset {Offset} ({Extents} extents)",
                    guard.Volume, seq, checkpoint.Position.Segment, checkpoint.Position.Offset, checkpoint.Extents.Count);
            }
            await PruneAsync(seq, pruneAllOlder, ct);
            return seq;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Freezes the index as of now into <paramref name="path"/> (a snapshot): the log is flushed
    /// first, so the frozen index names only durable bytes. Nothing is copied but the index.
    /// </summary>
    public async Task<RafCheckpoint> WriteFrozenAsync(string path, Func<Task> flushLog, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            RafCheckpoint frozen;
            lock (state.Gate)
            {
                frozen = new RafCheckpoint(state.Applied, state.Index.Snapshot());
            }
            await flushLog();
            await RafFiles.WriteAtomicallyAsync(fs, path, frozen.Serialize(), replicas, guard, ct);
            logger.LogInformation("Volume {Volume}: snapshot {Path} frozen at seq {Seq} ({Extents} extents)",
                guard.Volume, path, frozen.Position.Seq, frozen.Extents.Count);
            return frozen;
        }
        finally
        {
            _lock.Release();
        }
    }

    private async Task WriteFileAsync(string path, byte[] bytes, CancellationToken ct)
    {
        if (await fs.StatAsync(path, ct) is not null)
        {
            // Same seq means same index: only a torn leftover of a crashed engine can be here.
            await fs.DeleteAsync(path, guard, ct);
        }
        await fs.CreateAsync(path, replicas, guard, ct);
        var appender = await fs.OpenForAppendAsync(path, guard, ct);
        await using (appender)
        {
            for (var at = 0; at < bytes.Length; at += AppendPieceBytes)
            {
                var piece = bytes.AsMemory(at, Math.Min(AppendPieceBytes, bytes.Length - at));
                await appender.AppendAsync(piece, durable: at + piece.Length == bytes.Length, ct);
            }
            await appender.CloseAsync(ct);
        }
    }

    private async Task PruneAsync(ulong newest, bool all, CancellationToken ct)
    {
        var older = (await RafLayout.ListNumbersAsync(fs, layout.CheckpointDirectory, ct))
            .Where(n => n < newest)
            .OrderDescending()
            .Skip(all ? 0 : Math.Max(0, options.CheckpointsToKeep - 1));
        foreach (var seq in older)
        {
            await RafLayout.DeleteIfExistsAsync(fs, layout.CheckpointPath(seq), guard, ct);
        }
    }
}
