using System.Globalization;

namespace FeitianK8s.Core.Raf;

/// <summary>File names of a volume: <c>&lt;dir&gt;/log/&lt;segment:D12&gt;</c> and <c>&lt;dir&gt;/checkpoint/&lt;seq:D20&gt;</c>.</summary>
public sealed class RafLayout(string directory)
{
    public string Directory { get; } = directory.TrimEnd('/');
    public string LogDirectory => $"{Directory}/log";
    public string CheckpointDirectory => $"{Directory}/checkpoint";

    public string SegmentPath(ulong segment) => $"{LogDirectory}/{segment:D12}";

    public string CheckpointPath(ulong seq) => $"{CheckpointDirectory}/{seq:D20}";

    /// <summary>Parses the number at the end of a segment or checkpoint path; false for foreign files.</summary>
    public static bool TryParseNumber(string path, out ulong number)
    {
        var name = path[(path.LastIndexOf('/') + 1)..];
        return ulong.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out number);
    }
}

/// <summary>A point in the log: the byte after the last applied record and that record's sequence number.</summary>
public readonly record struct LogPosition(ulong Segment, long Offset, ulong Seq);
