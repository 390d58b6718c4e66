using System.Globalization;
using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>File names of a volume: <c>&lt;dir&gt;/log/&lt;segment:D12&gt;</c> and <c>&lt;dir&gt;/checkpoint/&lt;seq:D20&gt;</c>.</summary>
public sealed class RafLayout(string directory)
{
    public string Directory { get; } = directory.TrimEnd('/');
    public string LogDirectory => $"{Directory}/log";
    public string CheckpointDirectory => $"{Directory}/checkpoint";

    public string SegmentPath(ulong segment) => $"{LogDirectory}/{segment:D12}";

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
