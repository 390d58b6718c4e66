using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>What opening a volume found: the rebuilt state and the newest valid checkpoint's seq.</summary>
public sealed record RecoveredVolume(RafVolumeState State, ulong? CheckpointSeq, int ReplayedRecords, long TornBytes);

/// <summary>The volume's log cannot be recovered without losing acknowledged data.</summary>
public sealed class RafCorruptException(string message) : Exception(message);

/// <summary>
/// Rebuilds a volume's index: fence the previous engine (take over the last segment),
/// load the newest checkpoint whose CRC verifies and whose segments all exist, then
/// replay every later record in log order, each verified by its CRCs. A segment's replay
/// stops at its first invalid record (a torn tail) and continues with the next segment:
/// the writer starts a new segment after any failed append, so nothing acknowledged
/// follows a torn record within a segment. A read-only recovery fences nobody and
/// deletes nothing: it reads what the log holds now.
/// </summary>
public sealed class RafRecovery(IPanguFileSystem fs, RafLayout layout, PanguVolumeGuard guard, RafOptions options, ILogger logger, bool readOnly = false)
{
    public async Task<RecoveredVolume> RecoverAsync(CancellationToken ct)
    {
        var segments = await ListNumbersAsync(layout.LogDirectory, ct);
        if (segments.Count > 0 && !readOnly)
        {
            await FenceAsync(layout.SegmentPath(segments[^1]), ct);
        }
        var lengths = new Dictionary<ulong, long>();
        foreach (var segment in segments)
        {
            lengths[segment] = (await fs.StatAsync(layout.SegmentPath(segment), ct))?.Length ?? 0;
        }
        var (checkpoint, checkpointSeq) = await LoadCheckpointAsync(segments, ct);
        var index = new ExtentIndex();
        foreach (var extent in checkpoint.Extents)
        {
            index.Put(extent.Start, extent.Length, extent.Segment, extent.DataOffset, extent.Seq);
        }
        var position = checkpoint.Position;
        var replayed = 0;
        long torn = 0;
        foreach (var segment in segments.Where(s => s >= checkpoint.Position.Segment))
        {
            var start = segment == checkpoint.Position.Segment ? checkpoint.Position.Offset : 0;
            var reader = await fs.OpenForReadAsync(layout.SegmentPath(segment), ct);
            await using (reader)
            {
                var scanner = new RafLogScanner(reader, options.MaxRecordDataBytes);
                var lastSeq = position.Seq;
                var result = await scanner.ScanAsync(start, (header, dataOffset) =>
                {
                    if (header.Seq <= lastSeq)
                    {
                        return false;
                    }
                    RafVolumeState.ApplyRecord(index, header, segment, dataOffset);
                    lastSeq = header.Seq;
                    return true;
                }, ct);
                replayed += result.Records;
                torn += result.TrailingBytes;
                position = new LogPosition(segment, result.EndOffset, lastSeq);
                if (result.TrailingBytes > 0)
                {
                    logger.LogWarning("Volume {Volume}: ignoring {Bytes} bytes after the last valid record at {Path} offset {Offset} (torn or unacknowledged)",
                        guard.Volume, result.TrailingBytes, layout.SegmentPath(segment), result.EndOffset);
                }
            }
        }
        logger.LogInformation("Volume {Volume}: recovered from checkpoint {Checkpoint} and {Records} replayed records across {Segments} segments; log position segment {Segment} offset {Offset} seq {Seq}",
            guard.Volume, checkpointSeq?.ToString() ?? "none", replayed, segments.Count, position.Segment, position.Offset, position.Seq);
        return new RecoveredVolume(new RafVolumeState(index, position, lengths), checkpointSeq, replayed, torn);
    }

    /// <summary>Takes over the last segment: a new lease epoch seals it, so the previous engine's next append is fenced.</summary>
    private async Task FenceAsync(string path, CancellationToken ct)
    {
        var appender = await fs.OpenForAppendAsync(path, guard, ct);
        await using (appender)
        {
            // Whatever the previous engine acknowledged becomes durable too.
            await appender.FlushAsync(ct);
            await appender.CloseAsync(ct);
        }
    }

    private async Task<(RafCheckpoint Checkpoint, ulong? Seq)> LoadCheckpointAsync(List<ulong> segments, CancellationToken ct)
    {
        var existing = segments.ToHashSet();
        // A clone's index also points into the segments it shares with its source.
        existing.UnionWith(layout.SharedSegments.Keys);
        var checkpoints = await ListNumbersAsync(layout.CheckpointDirectory, ct);
        var invalid = new List<ulong>();
        for (var i = checkpoints.Count - 1; i >= 0; i--)
        {
            var seq = checkpoints[i];
            var checkpoint = RafCheckpoint.TryParse(await ReadAllAsync(layout.CheckpointPath(seq), ct));
            var usable = checkpoint is not null
                && checkpoint.Position.Seq == seq
                && checkpoint.Extents.All(e => existing.Contains(e.Segment))
                && IsContiguousFrom(segments, checkpoint.Position.Segment);
            if (usable)
            {
                await DeleteInvalidAsync(invalid, ct);
                return (checkpoint!, seq);
            }
            logger.LogWarning("Volume {Volume}: checkpoint {Path} is {Problem}; trying an older one",
                guard.Volume, layout.CheckpointPath(seq), checkpoint is null ? "torn or corrupt" : "referring to missing log segments");
            if (checkpoint is null)
            {
                invalid.Add(seq);
            }
        }
        if (checkpoints.Count > invalid.Count)
        {
            throw new RafCorruptException($"volume {guard.Volume}: no checkpoint in {layout.CheckpointDirectory} matches the log segments in {layout.LogDirectory}");
        }
        // Replaying from the very first record is only sound if no segment was ever deleted.
        if (segments.Count > 0 && (segments[0] != 1 || !IsContiguousFrom(segments, 1)))
        {
            throw new RafCorruptException($"volume {guard.Volume}: no valid checkpoint and the log in {layout.LogDirectory} does not start at segment 1");
        }
        await DeleteInvalidAsync(invalid, ct);
        return (new RafCheckpoint(new LogPosition(0, 0, 0), []), null);
    }

    private async Task DeleteInvalidAsync(List<ulong> invalid, CancellationToken ct)
    {
        if (readOnly)
        {
            return;
        }
        foreach (var bad in invalid)
        {
            await fs.DeleteAsync(layout.CheckpointPath(bad), guard, ct);
        }
    }

    /// <summary>True when no segment numbered <paramref name="first"/> or later is missing between the ones present.</summary>
    private static bool IsContiguousFrom(List<ulong> segments, ulong first)
    {
        var tail = segments.Where(s => s >= first).ToList();
        for (var i = 1; i < tail.Count; i++)
        {
            if (tail[i] != tail[i - 1] + 1)
            {
                return false;
            }
        }
        return true;
    }

    private async Task<byte[]> ReadAllAsync(string path, CancellationToken ct)
    {
        var reader = await fs.OpenForReadAsync(path, ct);
        await using (reader)
        {
            var bytes = new byte[reader.Length];
            var at = 0;
            while (at < bytes.Length)
            {
                var read = await reader.ReadAsync(at, bytes.AsMemory(at), ct);
                if (read <= 0)
                {
                    return bytes[..at];
                }
                at += read;
            }
            return bytes;
        }
    }

    private Task<List<ulong>> ListNumbersAsync(string directory, CancellationToken ct) => RafLayout.ListNumbersAsync(fs, directory, ct);
}
