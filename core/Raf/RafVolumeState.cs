using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>The open head segment and the readers currently using its appender.</summary>
public sealed class HeadSegment(ulong segment, IPanguAppender appender)
{
    public ulong Segment { get; } = segment;
    public IPanguAppender Appender { get; } = appender;

    /// <summary>Reads in flight through <see cref="Appender"/>; the appender is closed only after they end. Guarded by the volume gate.</summary>
    public int Readers { get; set; }
}

/// <summary>
/// State shared by the writer, readers, checkpointer and GC, all guarded by <see cref="Gate"/>.
/// Invariant: the index and <see cref="Applied"/> change together, only in log order, and
/// only after the records they describe were acknowledged by the file system, so the
/// index never points at unacknowledged bytes and a snapshot of both is a consistent checkpoint.
/// </summary>
public sealed class RafVolumeState(ExtentIndex index, LogPosition applied, IDictionary<ulong, long> segmentLengths)
{
    public object Gate { get; } = new();
    public ExtentIndex Index { get; } = index;
    public LogPosition Applied { get; set; } = applied;

    /// <summary>Every segment file of the log with its length (sealed ones and the head).</summary>
    public SortedDictionary<ulong, long> SegmentLengths { get; } = new(segmentLengths);

    /// <summary>Null until the first write after open creates a new segment.</summary>
    public HeadSegment? Head { get; set; }

    /// <summary>Reads in flight per segment: GC deletes a segment only when its count is zero.</summary>
    public Dictionary<ulong, int> ReadsInFlight { get; } = [];

    public long LogBytes => SegmentLengths.Values.Sum();

    /// <summary>The highest segment number ever used; numbers are never reused, so a log position can never point into a different file.</summary>
    public ulong HighestSegment { get; set; } = Math.Max(applied.Segment, segmentLengths.Count == 0 ? 0 : segmentLengths.Keys.Max());

    /// <summary>Applies one record to the index: the same function at run time and in replay, so both build the same index.</summary>
    public static void ApplyRecord(ExtentIndex index, RafRecordHeader record, ulong segment, long dataOffset)
    {
        switch (record.Kind)
        {
            case RafRecordKind.Write:
                index.Put(record.VolumeOffset, record.Length, segment, dataOffset, record.Seq);
                break;
            case RafRecordKind.Trim:
            case RafRecordKind.Zero:
                index.Remove(record.VolumeOffset, record.Length);
                break;
            case RafRecordKind.Relocate:
                index.Relocate(record.VolumeOffset, record.Length, record.SourceSegment, record.SourceOffset, segment, dataOffset);
                break;
        }
    }
}
