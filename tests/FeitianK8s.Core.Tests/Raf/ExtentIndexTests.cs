using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class ExtentIndexTests
{
    [Fact]
    public void OverlappingPutSplitsExtentsAndKeepsLiveBytes()
    {
        var index = new ExtentIndex();
        index.Put(0, 100, 1, 1000, 1);
        index.Put(40, 20, 2, 5000, 2);
        Assert.Equal(
            [new Extent(0, 40, 1, 1000, 1), new Extent(40, 20, 2, 5000, 2), new Extent(60, 40, 1, 1060, 1)],
            index.Snapshot());
        Assert.Equal(80, index.LiveBytes(1));
        Assert.Equal(20, index.LiveBytes(2));
        Assert.Equal(100, index.TotalLiveBytes);

        index.Put(30, 50, 3, 0, 3);
        Assert.Equal(
            [new Extent(0, 30, 1, 1000, 1), new Extent(30, 50, 3, 0, 3), new Extent(80, 20, 1, 1080, 1)],
            index.Snapshot());
        Assert.Equal(0, index.LiveBytes(2));
        Assert.DoesNotContain(2ul, index.ReferencedSegments());
    }

    [Fact]
    public void LookupCoversHolesAndExtentsExactly()
    {
        var index = new ExtentIndex();
        index.Put(10, 10, 1, 100, 1);
        index.Put(30, 10, 2, 200, 2);
        Assert.Equal(
            [new ReadPiece(5, 5, 0, 0), new ReadPiece(10, 10, 1, 100), new ReadPiece(20, 10, 0, 0), new ReadPiece(30, 5, 2, 200)],
            index.Lookup(5, 30));
        Assert.Equal([new ReadPiece(13, 2, 1, 103)], index.Lookup(13, 2));
        Assert.Equal([new ReadPiece(50, 10, 0, 0)], index.Lookup(50, 10));
    }

    [Fact]
    public void RemoveDropsOnlyTheRange()
    {
        var index = new ExtentIndex();
        index.Put(0, 100, 1, 0, 1);
        index.Remove(10, 10);
        index.Remove(90, 50);
        Assert.Equal([new Extent(0, 10, 1, 0, 1), new Extent(20, 70, 1, 20, 1)], index.Snapshot());
        Assert.Equal(80, index.LiveBytes(1));
    }

    [Fact]
    public void RelocateMovesOnlyPartsStillAtTheSourceLocation()
    {
        var index = new ExtentIndex();
        index.Put(0, 100, 1, 1000, 1);
        // Overwritten and trimmed after GC read the extent: those parts must keep the newer state.
        index.Put(20, 10, 2, 0, 2);
        index.Remove(50, 10);
        var moved = index.Relocate(0, 100, sourceSegment: 1, sourceOffset: 1000, segment: 3, dataOffset: 7000);
        Assert.Equal(80, moved);
        Assert.Equal(
            [
                new Extent(0, 20, 3, 7000, 1), new Extent(20, 10, 2, 0, 2), new Extent(30, 20, 3, 7030, 1),
                new Extent(60, 40, 3, 7060, 1),
            ],
            index.Snapshot());
        Assert.Equal(0, index.LiveBytes(1));

        // Same range written again at another spot of segment 1: not the relocated location, so untouched.
        index.Put(0, 10, 1, 9000, 4);
        Assert.Equal(0, index.Relocate(0, 10, 1, 1000, 5, 0));
        Assert.Equal(new Extent(0, 10, 1, 9000, 4), index.Snapshot()[0]);
    }

    [Fact]
    public void RandomOperationsMatchAByteMap()
    {
        const int size = 4096;
        var random = new Random(3);
        var index = new ExtentIndex();
        var owner = new (ulong Segment, long Offset)[size];
        for (var step = 0; step < 3000; step++)
        {
            var start = random.Next(size);
            var length = random.Next(1, Math.Min(300, size - start) + 1);
            if (random.Next(4) == 0)
            {
                index.Remove(start, length);
                Array.Fill(owner, default, start, length);
            }
            else
            {
                var segment = (ulong)random.Next(1, 5);
                var offset = random.Next(1_000_000);
                index.Put(start, length, segment, offset, (ulong)step);
                for (var i = 0; i < length; i++)
                {
                    owner[start + i] = (segment, offset + i);
                }
            }
        }
        foreach (var piece in index.Lookup(0, size))
        {
            for (var i = 0; i < piece.Length; i++)
            {
                Assert.Equal(piece.IsHole ? default : (piece.Segment, piece.DataOffset + i), owner[piece.Start + i]);
            }
        }
        for (ulong segment = 1; segment < 5; segment++)
        {
            Assert.Equal(owner.Count(o => o.Segment == segment), index.LiveBytes(segment));
        }
    }

    /// <summary>
    /// Random puts, removes, relocations and lookups across many index buckets (1 MiB of address space
    /// each), with extents both far shorter and longer than a bucket, checked after every step against a
    /// plain per-sector model of what each sector maps to.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Matches_a_per_sector_model_under_random_operations_across_buckets(int seed)
    {
        const long Unit = 512;
        const int Sectors = 24 << 20 >> 9; // 24 MiB
        var random = new Random(seed);
        var index = new ExtentIndex();
        var model = new (ulong Segment, long DataOffset, ulong Seq)[Sectors];
        ulong seq = 0;
        for (int step = 0; step < 1500; step++)
        {
            long first = random.Next(Sectors);
            // Mostly short ranges, some longer than a bucket.
            long count = Math.Min(Sectors - first, random.Next(10) == 0 ? random.Next(1, 12_288) : random.Next(1, 64));
            long start = first * Unit, length = count * Unit;
            switch (random.Next(10))
            {
                case < 6:
                    ulong segment = (ulong)random.Next(1, 5);
                    long dataOffset = random.Next(0, 1 << 20) * Unit;
                    index.Put(start, length, segment, dataOffset, ++seq);
                    for (long s = 0; s < count; s++)
                    {
                        model[first + s] = (segment, dataOffset + s * Unit, seq);
                    }
                    break;
                case < 8:
                    index.Remove(start, length);
                    for (long s = 0; s < count; s++)
                    {
                        model[first + s] = default;
                    }
                    break;
                default:
                    // Relocate what the model says sits at the first sector, as GC would after reading it.
                    var (source, sourceOffset, _) = model[first];
                    if (source == 0)
                    {
                        break;
                    }
                    long target = random.Next(0, 1 << 20) * Unit;
                    long expected = 0;
                    for (long s = 0; s < count; s++)
                    {
                        var cell = model[first + s];
                        if (cell.Segment == source && cell.DataOffset == sourceOffset + s * Unit)
                        {
                            model[first + s] = (9, target + s * Unit, cell.Seq);
                            expected += Unit;
                        }
                    }
                    Assert.Equal(expected, index.Relocate(start, length, source, sourceOffset, 9, target));
                    break;
            }
            if (step % 100 == 0 || step == 1499)
            {
                AssertMatches(index, model, Unit);
            }
            long probe = random.Next(Sectors);
            long probeCount = Math.Min(Sectors - probe, random.Next(1, 3_000));
            AssertLookupMatches(index, model, probe, probeCount, Unit);
        }
    }

    private static void AssertLookupMatches(ExtentIndex index, (ulong Segment, long DataOffset, ulong Seq)[] model, long first, long count, long unit)
    {
        long cursor = first * unit;
        foreach (var piece in index.Lookup(first * unit, count * unit))
        {
            Assert.Equal(cursor, piece.Start);
            for (long at = piece.Start; at < piece.Start + piece.Length; at += unit)
            {
                var cell = model[at / unit];
                Assert.Equal(cell.Segment, piece.Segment);
                if (!piece.IsHole)
                {
                    Assert.Equal(cell.DataOffset, piece.DataOffset + (at - piece.Start));
                }
            }
            cursor = piece.Start + piece.Length;
        }
        Assert.Equal((first + count) * unit, cursor);
    }

    private static void AssertMatches(ExtentIndex index, (ulong Segment, long DataOffset, ulong Seq)[] model, long unit)
    {
        var extents = index.Snapshot();
        for (int i = 1; i < extents.Count; i++)
        {
            Assert.True(extents[i - 1].End <= extents[i].Start, $"extents {extents[i - 1]} and {extents[i]} overlap or are out of order");
        }
        Assert.Equal(extents.Count, index.Count);
        var live = new Dictionary<ulong, long>();
        foreach (var cell in model.Where(c => c.Segment != 0))
        {
            live[cell.Segment] = live.GetValueOrDefault(cell.Segment) + unit;
        }
        foreach (var (segment, bytes) in live)
        {
            Assert.Equal(bytes, index.LiveBytes(segment));
            Assert.Equal(bytes, index.ExtentsIn(segment).Sum(e => e.Length));
        }
        Assert.Equal(live.Values.Sum(), index.TotalLiveBytes);
        Assert.Equal(live.Keys.Order(), index.ReferencedSegments().Order());
    }
}
