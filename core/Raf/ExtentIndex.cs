namespace FeitianK8s.Core.Raf;

/// <summary>A volume range [Start, Start+Length) whose bytes are at <see cref="DataOffset"/> in log segment <see cref="Segment"/>, written by record <see cref="Seq"/>.</summary>
public readonly record struct Extent(long Start, long Length, ulong Segment, long DataOffset, ulong Seq)
{
    public long End => Start + Length;
}

/// <summary>A piece of a read: a hole (Segment 0, reads zeros) or bytes in the log.</summary>
public readonly record struct ReadPiece(long Start, long Length, ulong Segment, long DataOffset)
{
    public bool IsHole => Segment == 0;
}

/// <summary>
/// The in-memory map volume range → log location. Invariants: extents never overlap;
/// a range not covered reads as zeros; <see cref="LiveBytes"/> of a segment is the sum
/// of the lengths of the extents pointing into it. Not thread-safe: the volume guards it.
/// Segment numbers start at 1 (0 marks a hole).
/// </summary>
public sealed class ExtentIndex
{
    private static readonly Comparer<Extent> ByStart = Comparer<Extent>.Create((a, b) => a.Start.CompareTo(b.Start));
    private readonly SortedSet<Extent> _extents = new(ByStart);
    private readonly Dictionary<ulong, long> _live = [];

    public int Count => _extents.Count;

    public long TotalLiveBytes { get; private set; }

    public long LiveBytes(ulong segment) => _live.GetValueOrDefault(segment);

    public IReadOnlyList<Extent> Snapshot() => [.. _extents];

    /// <summary>Maps [start, start+length) to the log, replacing whatever was there (overlaps are split).</summary>
    public void Put(long start, long length, ulong segment, long dataOffset, ulong seq)
    {
        if (length <= 0)
        {
            return;
        }
        Remove(start, length);
        Add(new Extent(start, length, segment, dataOffset, seq));
    }

    /// <summary>Drops every mapping in [start, start+length): the range reads zeros afterwards.</summary>
    public void Remove(long start, long length)
    {
        if (length <= 0)
        {
            return;
        }
        var end = start + length;
        foreach (var e in Overlapping(start, end))
        {
            Drop(e);
            if (e.Start < start)
            {
                Add(e with { Length = start - e.Start });
            }
            if (e.End > end)
            {
                Add(new Extent(end, e.End - end, e.Segment, e.DataOffset + (end - e.Start), e.Seq));
            }
        }
    }

    /// <summary>
    /// GC relocation: the parts of [start, start+length) that still map to the source
    /// location (segment <paramref name="sourceSegment"/>, data at <paramref name="sourceOffset"/>
    /// for volume offset <paramref name="start"/>) are moved to the new location; parts
    /// overwritten or trimmed since the GC read them are left alone (the newer write wins).
    /// Returns the number of bytes moved.
    /// </summary>
    public long Relocate(long start, long length, ulong sourceSegment, long sourceOffset, ulong segment, long dataOffset)
    {
        if (length <= 0)
        {
            return 0;
        }
        var end = start + length;
        long moved = 0;
        foreach (var e in Overlapping(start, end))
        {
            if (e.Segment != sourceSegment || e.DataOffset - e.Start != sourceOffset - start)
            {
                continue;
            }
            var from = Math.Max(start, e.Start);
            var to = Math.Min(end, e.End);
            Drop(e);
            if (e.Start < from)
            {
                Add(e with { Length = from - e.Start });
            }
            Add(new Extent(from, to - from, segment, dataOffset + (from - start), e.Seq));
            if (e.End > to)
            {
                Add(new Extent(to, e.End - to, e.Segment, e.DataOffset + (to - e.Start), e.Seq));
            }
            moved += to - from;
        }
        return moved;
    }

    /// <summary>Covers [start, start+length) exactly with pieces in volume order, holes included.</summary>
    public List<ReadPiece> Lookup(long start, long length)
    {
        var pieces = new List<ReadPiece>();
        var end = start + length;
        var cursor = start;
        if (length <= 0)
        {
            return pieces;
        }
        foreach (var e in Overlapping(start, end))
        {
            var from = Math.Max(start, e.Start);
            var to = Math.Min(end, e.End);
            if (from > cursor)
            {
                pieces.Add(new ReadPiece(cursor, from - cursor, 0, 0));
            }
            pieces.Add(new ReadPiece(from, to - from, e.Segment, e.DataOffset + (from - e.Start)));
            cursor = to;
        }
        if (cursor < end)
        {
            pieces.Add(new ReadPiece(cursor, end - cursor, 0, 0));
        }
        return pieces;
    }

    public List<Extent> ExtentsIn(ulong segment) => _extents.Where(e => e.Segment == segment).ToList();

    public IEnumerable<ulong> ReferencedSegments() => _live.Keys;

    private List<Extent> Overlapping(long start, long end)
    {
        var result = new List<Extent>();
        if (_extents.Count == 0)
        {
            return result;
        }
        if (start > 0)
        {
            var before = _extents.GetViewBetween(new Extent(long.MinValue, 0, 0, 0, 0), new Extent(start - 1, 0, 0, 0, 0));
            // Max of an empty view is default (Length 0), which never overlaps; Count would walk the whole view.
            var max = before.Max;
            if (max.Length > 0 && max.End > start)
            {
                result.Add(max);
            }
        }
        result.AddRange(_extents.GetViewBetween(new Extent(start, 0, 0, 0, 0), new Extent(end - 1, 0, 0, 0, 0)));
        return result;
    }

    private void Add(Extent e)
    {
        _extents.Add(e);
        _live[e.Segment] = _live.GetValueOrDefault(e.Segment) + e.Length;
        TotalLiveBytes += e.Length;
    }

    private void Drop(Extent e)
    {
        _extents.Remove(e);
        var left = _live[e.Segment] - e.Length;
        if (left == 0)
        {
            _live.Remove(e.Segment);
        }
        else
        {
            _live[e.Segment] = left;
        }
        TotalLiveBytes -= e.Length;
    }
}
