using System.Globalization;
using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// File names of a volume: <c>&lt;dir&gt;/log/&lt;segment:D12&gt;</c>, <c>&lt;dir&gt;/checkpoint/&lt;seq:D20&gt;</c>,
/// snapshots <c>&lt;dir&gt;/snapshots/&lt;name&gt;</c> (frozen checkpoints), snapshot requests
/// <c>&lt;dir&gt;/snapshot-requests/&lt;name&gt;</c>, pins other volumes hold on this one's segments
/// <c>&lt;dir&gt;/refs/&lt;volume&gt;</c>, and for a clone <c>&lt;dir&gt;/shared-segments</c>: the segments
/// of other volumes its index points at (<see cref="SharedSegments"/>).
/// Invariant: within one volume a segment number names exactly one file; a clone's own
/// segments are numbered above every shared one.
/// </summary>
public sealed class RafLayout(string directory, IReadOnlyDictionary<ulong, string>? sharedSegments = null)
{
    public string Directory { get; } = directory.TrimEnd('/');
    public string LogDirectory => $"{Directory}/log";
    public string CheckpointDirectory => $"{Directory}/checkpoint";
    public string SnapshotDirectory => $"{Directory}/snapshots";
    public string SnapshotRequestDirectory => $"{Directory}/snapshot-requests";
    public string RefsDirectory => $"{Directory}/refs";
    public string SharedSegmentsPath => $"{Directory}/shared-segments";

    /// <summary>Segments of other volumes this volume's index may point at, by number, with their paths.</summary>
    public IReadOnlyDictionary<ulong, string> SharedSegments { get; } = sharedSegments ?? new Dictionary<ulong, string>();

    public string SegmentPath(ulong segment) => SharedSegments.TryGetValue(segment, out var shared) ? shared : $"{LogDirectory}/{segment:D12}";

    public string SnapshotPath(string name) => $"{SnapshotDirectory}/{name}";

    public string SnapshotRequestPath(string name) => $"{SnapshotRequestDirectory}/{name}";

    public string RefPath(string volume) => $"{RefsDirectory}/{volume}";

    /// <summary>The volume directory a segment path lies in (<c>/volumes/NAME/log/000000000001</c> → <c>/volumes/NAME</c>).</summary>
    public static string VolumeDirectoryOf(string segmentPath)
    {
        var log = segmentPath.LastIndexOf("/log/", StringComparison.Ordinal);
        return log > 0 ? segmentPath[..log] : throw new ArgumentException($"'{segmentPath}' is not a log segment path", nameof(segmentPath));
    }

    public string CheckpointPath(ulong seq) => $"{CheckpointDirectory}/{seq:D20}";

    /// <summary>The numbered files (segments or checkpoints) in a directory, ascending; a directory that does not exist yet is empty.</summary>
    public static async Task<List<ulong>> ListNumbersAsync(IPanguFileSystem fs, string directory, CancellationToken ct)
    {
        IReadOnlyList<PanguDirectoryEntry> entries;
        try
        {
            entries = await fs.ListAsync(directory, ct: ct);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
            return [];
        }
        return entries
            .Where(e => !e.IsDirectory)
            .Select(e => TryParseNumber(e.Path, out var n) ? n : (ulong?)null)
            .OfType<ulong>()
            .Order()
            .ToList();
    }

    /// <summary>Deletes a file; one that is already gone counts as deleted.</summary>
    public static async Task DeleteIfExistsAsync(IPanguFileSystem fs, string path, PanguVolumeGuard guard, CancellationToken ct)
    {
        try
        {
            await fs.DeleteAsync(path, guard, ct);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
        }
    }

    /// <summary>Parses the number at the end of a segment or checkpoint path; false for foreign files.</summary>
    public static bool TryParseNumber(string path, out ulong number)
    {
        var name = path[(path.LastIndexOf('/') + 1)..];
        return ulong.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out number);
    }
}

/// <summary>A point in the log: the byte after the last applied record and that record's sequence number.</summary>
public readonly record struct LogPosition(ulong Segment, long Offset, ulong Seq);
