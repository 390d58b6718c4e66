using FeitianK8s.Core.Common;
using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class RafFormatTests
{
    [Fact]
    public void RecordHeaderRoundTripsAndRejectsAnyFlippedBit()
    {
        var data = RafHarness.Pattern(100, 1);
        var header = RafRecordHeader.ForData(RafRecordKind.Relocate, 42, 4096, data, 7, 12345);
        var bytes = new byte[RafRecordHeader.Size];
        header.Write(bytes);
        Assert.True(RafRecordHeader.TryRead(bytes, 1 << 20, out var parsed));
        Assert.Equal(header, parsed);
        for (var bit = 0; bit < RafRecordHeader.Size * 8; bit++)
        {
            var flipped = (byte[])bytes.Clone();
            flipped[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(RafRecordHeader.TryRead(flipped, 1 << 20, out _), $"bit {bit} flipped still parses");
        }
        Assert.False(RafRecordHeader.TryRead(bytes.AsSpan(0, RafRecordHeader.Size - 1), 1 << 20, out _));
        Assert.False(RafRecordHeader.TryRead(bytes, 99, out _));
    }

    [Fact]
    public void CheckpointRoundTripsAndRejectsTornOrCorruptBytes()
    {
        var checkpoint = new RafCheckpoint(new LogPosition(3, 777, 99), [new Extent(0, 10, 1, 64, 5), new Extent(4096, 8192, 3, 128, 99)]);
        var bytes = checkpoint.Serialize();
        var parsed = RafCheckpoint.TryParse(bytes);
        Assert.NotNull(parsed);
        Assert.Equal(checkpoint.Position, parsed.Position);
        Assert.Equal(checkpoint.Extents, parsed.Extents);

        Assert.Null(RafCheckpoint.TryParse(bytes.AsSpan(0, bytes.Length - 1)));
        Assert.Null(RafCheckpoint.TryParse([]));
        var corrupt = (byte[])bytes.Clone();
        corrupt[50] ^= 1;
        Assert.Null(RafCheckpoint.TryParse(corrupt));
        Assert.Null(RafCheckpoint.TryParse(RafHarness.Pattern(500, 3)));
    }

    [Fact]
    public void TokenBucketChargesDebtAtItsRate()
    {
        var now = TimeSpan.Zero;
        var bucket = new TokenBucket(1000, 500, () => now);
        Assert.Equal(TimeSpan.Zero, bucket.Take(500));
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.Take(1000));
        now += TimeSpan.FromSeconds(1);
        Assert.Equal(TimeSpan.Zero, bucket.Take(0));
        now += TimeSpan.FromSeconds(10);
        // Refill is capped at the burst.
        Assert.Equal(TimeSpan.FromSeconds(0.5), bucket.Take(1000));
        Assert.Equal(TimeSpan.Zero, new TokenBucket(0, 0).Take(long.MaxValue));
    }
}
