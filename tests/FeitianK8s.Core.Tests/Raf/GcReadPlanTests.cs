using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class GcReadPlanTests
{
    private const ulong Segment = 7;

    [Fact]
    public void Neighbours_with_small_gaps_share_one_read_in_segment_order()
    {
        // Volume order differs from segment order: the plan follows the segment.
        var extents = new[]
        {
            new Extent(Start: 900 << 12, Length: 4096, Segment, DataOffset: 20_000, Seq: 3),
            new Extent(Start: 5 << 12, Length: 4096, Segment, DataOffset: 100, Seq: 1),
            new Extent(Start: 70 << 12, Length: 8192, Segment, DataOffset: 4_300, Seq: 2),
        };

        var windows = GcReadPlan.Build(extents, maxWindowBytes: 1 << 20, maxPieceBytes: 1 << 20, maxGapBytes: 8192);

        var window = Assert.Single(windows);
        Assert.Equal(100, window.Offset);
        Assert.Equal(20_000 + 4096 - 100, window.Length);
        Assert.Equal([100L, 4_300, 20_000], window.Pieces.Select(p => p.DataOffset));
        Assert.Equal([5L << 12, 70 << 12, 900 << 12], window.Pieces.Select(p => p.Start));
        Assert.Equal(4096 + 8192 + 4096, window.LiveBytes);
    }

    [Fact]
    public void A_gap_wider_than_allowed_starts_a_new_read()
    {
        var extents = new[]
        {
            new Extent(0, 4096, Segment, 0, 1),
            new Extent(4096, 4096, Segment, 4096 + 8192, 2),
            new Extent(8192, 4096, Segment, 4096 + 8192 + 4096 + 8193, 3),
        };

        var windows = GcReadPlan.Build(extents, maxWindowBytes: 1 << 20, maxPieceBytes: 1 << 20, maxGapBytes: 8192);

        Assert.Equal([(0L, 4096 + 8192 + 4096), (4096 + 8192 + 4096 + 8193, 4096)], windows.Select(w => (w.Offset, w.Length)));
    }

    [Fact]
    public void Reads_stop_at_the_window_size_and_long_extents_are_cut_into_pieces()
    {
        var extents = new[]
        {
            new Extent(0, 10_000, Segment, 0, 1),
            new Extent(1 << 20, 3_000, Segment, 10_000, 2),
        };

        var windows = GcReadPlan.Build(extents, maxWindowBytes: 8192, maxPieceBytes: 4096, maxGapBytes: 1 << 20);

        Assert.All(windows, w => Assert.True(w.Length <= 8192, $"window of {w.Length} bytes"));
        var pieces = windows.SelectMany(w => w.Pieces).ToList();
        Assert.All(pieces, p => Assert.True(p.Length <= 4096));
        Assert.Equal([(0L, 4096, 0L), (4096, 4096, 4096), (8192, 1808, 8192), (1 << 20, 3000, 10_000)],
            pieces.Select(p => (p.Start, p.Length, p.DataOffset)));
        Assert.Equal([(0L, 8192), (8192, 1808 + 3000)], windows.Select(w => (w.Offset, w.Length)));
    }

    [Fact]
    public void Every_live_byte_is_in_exactly_one_piece_inside_its_read()
    {
        var random = new Random(11);
        var extents = new List<Extent>();
        long dataOffset = 0;
        for (var i = 0; i < 2_000; i++)
        {
            dataOffset += random.Next(0, 3) == 0 ? random.Next(1, 600_000) : random.Next(0, 9000);
            var length = random.Next(1, 3) == 1 ? 4096 : random.Next(1, 300_000);
            extents.Add(new Extent((long)i << 24, length, Segment, dataOffset, (ulong)i));
            dataOffset += length;
        }

        var windows = GcReadPlan.Build(extents.OrderBy(_ => random.Next()), maxWindowBytes: 1 << 20, maxPieceBytes: 65_536, maxGapBytes: 256 << 10);

        foreach (var window in windows)
        {
            Assert.True(window.Length <= 1 << 20);
            Assert.All(window.Pieces, p => Assert.True(p.DataOffset >= window.Offset && p.DataOffset + p.Length <= window.Offset + window.Length));
        }
        var covered = windows.SelectMany(w => w.Pieces).OrderBy(p => p.DataOffset).ToList();
        var expected = extents.SelectMany(e => Enumerable.Range(0, (int)((e.Length + 65_535) / 65_536))
            .Select(k => new RelocationPiece(e.Start + (k * 65_536L), (int)Math.Min(65_536, e.Length - (k * 65_536L)), e.DataOffset + (k * 65_536L)))).ToList();
        Assert.Equal(expected, covered);
        Assert.True(windows.Count < extents.Count / 2, $"{windows.Count} reads for {extents.Count} extents");
    }

    [Fact]
    public void No_extents_no_reads()
    {
        Assert.Empty(GcReadPlan.Build([], 1 << 20, 4096, 0));
    }
}
