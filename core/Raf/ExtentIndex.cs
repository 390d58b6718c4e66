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
/// Extents are kept in buckets of <see cref="BucketBytes"/> of volume address space by their start,
/// each bucket a list sorted by start, so finding the extents of a range costs a few binary searches
/// whatever the number of extents (a fragmented 1 TiB volume holds hundreds of millions). An extent
/// reaching into a range starts at most <see cref="_longest"/> bytes before it, which bounds the
/// buckets to look at.
/// </summary>
public sealed class ExtentIndex
{
    private const int BucketShift = 20;
    private const long BucketBytes = 1L << BucketShift;
    private readonly Dictionary<long, List<Extent>> _buckets = [];
    private readonly Dictionary<ulong, long> _live = [];
    /// <summary>Length of the longest extent ever added (never shrinks; only bounds the look-back).</summary>
    private long _longest;

    public int Count { get; private set; }

    public long TotalLiveBytes { get; private set; }

    public long LiveBytes(ulong segment) => _live.GetValueOrDefault(segment);

    /// <summary>Every extent in volume order.</summary>
    public IReadOnlyList<Extent> Snapshot()
    {
        var result = new List<Extent>(Count);
        foreach (var key in _buckets.Keys.Order())
        {
            result.AddRange(_buckets[key]);
        }
        return result;
    }

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

    /// <summary>The extents whose bytes are in <paramref name="segment"/>, in no particular order.</summary>
    public List<Extent> ExtentsIn(ulong segment)
    {
        var result = new List<Extent>();
        foreach (var bucket in _buckets.Values)
        {
            foreach (var extent in bucket)
            {
                if (extent.Segment == segment)
                {
                    result.Add(extent);
                }
            }
        }
        return result;
    }

    public IEnumerable<ulong> ReferencedSegments() => _live.Keys;

    /// <summary>The extents overlapping [start, end), in volume order (a copy: callers change the index while walking it).</summary>
    private List<Extent> Overlapping(long start, long end)
    {
        var result = new List<Extent>();
        if (Count == 0)
        {
            return result;
        }
        long first = Math.Max(0, start - _longest) >> BucketShift;
        long last = (end - 1) >> BucketShift;
        for (long key = first; key <= last; key++)
        {
            if (!_buckets.TryGetValue(key, out var bucket))
            {
                continue;
            }
            // Extents do not overlap, so their ends are sorted like their starts.
            for (int i = FirstEndingAfter(bucket, start); i < bucket.Count && bucket[i].Start < end; i++)
            {
                result.Add(bucket[i]);
            }
        }
        return result;
    }

    private static int FirstEndingAfter(List<Extent> bucket, long offset)
    {
        int lo = 0, hi = bucket.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (bucket[mid].End > offset)
            {
                hi = mid;
            }
            else
            {
                lo = mid + 1;
            }
        }
        return lo;
    }

    private static int IndexOfStart(List<Extent> bucket, long start)
    {
        int lo = 0, hi = bucket.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (bucket[mid].Start < start)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    private void Add(Extent e)
    {
        long key = e.Start >> BucketShift;
        if (!_buckets.TryGetValue(key, out var bucket))
        {
            bucket = [];
            _buckets[key] = bucket;
        }
        bucket.Insert(IndexOfStart(bucket, e.Start), e);
        Count++;
        _longest = Math.Max(_longest, e.Length);
        _live[e.Segment] = _live.GetValueOrDefault(e.Segment) + e.Length;
        TotalLiveBytes += e.Length;
    }

    private void Drop(Extent e)
    {
        long key = e.Start >> BucketShift;
        var bucket = _buckets[key];
        int at = IndexOfStart(bucket, e.Start);
        if (at >= bucket.Count || bucket[at] != e)
        {
            throw new InvalidOperationException($"extent {e} is not in the index");
        }
        bucket.RemoveAt(at);
        if (bucket.Count == 0)
        {
            _buckets.Remove(key);
        }
        Count--;
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
