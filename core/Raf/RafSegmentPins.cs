using System.Globalization;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// Reference counts of a volume's log segments beyond its live index: every snapshot
/// (<c>snapshots/NAME</c>, a frozen checkpoint) references the segments its extents point
/// into, and every clone sharing them holds a pin file (<c>refs/CLONE</c>, the segment
/// numbers it shares). GC deletes a segment only when its count is zero: no live extent,
/// no snapshot, no pin. Counts are derived from these files at each GC pass, so they
/// cannot drift from the files after a crash.
/// </summary>
public static class RafSegmentPins
{
    /// <summary>Number of references per segment; null when a file could not be read as what it should be (then nothing may be freed).</summary>
    public static async Task<Dictionary<ulong, int>?> CountAsync(IPanguFileSystem fs, RafLayout layout, ILogger logger, CancellationToken ct)
    {
        var counts = new Dictionary<ulong, int>();
        foreach (var name in await RafFiles.ListNamesAsync(fs, layout.SnapshotDirectory, ct))
        {
            var bytes = await RafFiles.TryReadAllAsync(fs, layout.SnapshotPath(name), ct);
            if (bytes is null)
            {
                continue; // deleted meanwhile: no longer a reference
            }
            if (RafCheckpoint.TryParse(bytes) is not { } snapshot)
            {
                logger.LogError("Volume directory {Directory}: snapshot {Snapshot} does not verify; GC frees nothing until it is repaired or removed", layout.Directory, name);
                return null;
            }
            foreach (var segment in snapshot.Extents.Select(e => e.Segment).Distinct())
            {
                counts[segment] = counts.GetValueOrDefault(segment) + 1;
            }
        }
        foreach (var holder in await RafFiles.ListNamesAsync(fs, layout.RefsDirectory, ct))
        {
            var bytes = await RafFiles.TryReadAllAsync(fs, layout.RefPath(holder), ct);
            if (bytes is null)
            {
                continue;
            }
            if (ParsePin(bytes) is not { } segments)
            {
                logger.LogError("Volume directory {Directory}: pin of {Holder} does not verify; GC frees nothing until it is repaired or removed", layout.Directory, holder);
                return null;
            }
            foreach (var segment in segments)
            {
                counts[segment] = counts.GetValueOrDefault(segment) + 1;
            }
        }
        return counts;
    }

    public static byte[] SerializePin(IEnumerable<ulong> segments) =>
        RafFiles.SealText(segments.Distinct().Order().Select(s => s.ToString(CultureInfo.InvariantCulture)));

    public static List<ulong>? ParsePin(byte[] bytes)
    {
        var lines = RafFiles.OpenText(bytes);
        if (lines is null)
        {
            return null;
        }
        var segments = new List<ulong>();
        foreach (var line in lines)
        {
            if (!ulong.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out var segment))
            {
                return null;
            }
            segments.Add(segment);
        }
        return segments;
    }
}

/// <summary>
/// A clone's map of the segments it shares with other volumes (<c>shared-segments</c>):
/// one line "number path" each. Written once when the clone is made, never changed.
/// </summary>
public static class RafSharedSegments
{
    public static byte[] Serialize(IReadOnlyDictionary<ulong, string> shared) =>
        RafFiles.SealText(shared.OrderBy(p => p.Key).Select(p => $"{p.Key.ToString(CultureInfo.InvariantCulture)} {p.Value}"));

    public static Dictionary<ulong, string>? Parse(byte[] bytes)
    {
        var lines = RafFiles.OpenText(bytes);
        if (lines is null)
        {
            return null;
        }
        var map = new Dictionary<ulong, string>();
        foreach (var line in lines)
        {
            var space = line.IndexOf(' ');
            if (space <= 0 || !ulong.TryParse(line.AsSpan(0, space), NumberStyles.None, CultureInfo.InvariantCulture, out var segment)
                || !map.TryAdd(segment, line[(space + 1)..]))
            {
                return null;
            }
        }
        return map;
    }

    /// <summary>The layout of the volume in <paramref name="directory"/>, with its shared segments when it is a clone.</summary>
    public static async Task<RafLayout> LoadLayoutAsync(IPanguFileSystem fs, string directory, CancellationToken ct)
    {
        var plain = new RafLayout(directory);
        var bytes = await RafFiles.TryReadAllAsync(fs, plain.SharedSegmentsPath, ct);
        if (bytes is null)
        {
            return plain;
        }
        var shared = Parse(bytes) ?? throw new RafCorruptException($"{plain.SharedSegmentsPath} does not verify: the clone's shared segments are unknown");
        return new RafLayout(directory, shared);
    }
}
