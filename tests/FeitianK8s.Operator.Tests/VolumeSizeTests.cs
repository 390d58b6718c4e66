using FeitianK8s.Operator.Volumes;

namespace FeitianK8s.Operator.Tests;

public sealed class VolumeSizeTests
{
    [Theory]
    [InlineData("4Ki", 4096)]
    [InlineData("10Gi", 10L << 30)]
    [InlineData("1", 4096)]
    [InlineData("4096", 4096)]
    [InlineData("4097", 8192)]
    [InlineData("5000", 8192)]
    [InlineData("1Mi", 1 << 20)]
    [InlineData("1.5Gi", 3L << 29)]
    [InlineData("1G", 1_000_001_536)] // 10^9 is not a multiple of 4 KiB: rounded up
    [InlineData("100M", 100_003_840)]
    [InlineData("2Ti", 2L << 40)]
    [InlineData("0.5Ki", 4096)]
    [InlineData(" 8Ki ", 8192)]
    public void Quantities_parse_to_bytes_rounded_up_to_4_KiB(string text, long expected)
    {
        Assert.True(VolumeSize.TryParse(text, out var bytes, out var error), error);
        Assert.Equal(expected, bytes);
        Assert.Equal(0, bytes % VolumeSize.BlockSize);
    }

    [Theory]
    [InlineData("", "is not a size")]
    [InlineData(null, "is not a size")]
    [InlineData("abc", "is not a size")]
    [InlineData("10 Gi", "is not a size")]
    [InlineData("10Xi", "is not a size")]
    [InlineData("-1Gi", "is not a size")]
    [InlineData("500m", "is not a size")]
    [InlineData("0", "more than zero")]
    [InlineData("0Gi", "more than zero")]
    [InlineData("8Ei", "larger than the largest volume")]
    [InlineData("99999999999999999999999999999999Pi", "larger than the largest volume")]
    public void Bad_sizes_are_refused_with_a_message(string? text, string fragment)
    {
        Assert.False(VolumeSize.TryParse(text, out var bytes, out var error));
        Assert.Equal(0, bytes);
        Assert.Contains(fragment, error);
    }

    [Theory]
    [InlineData(4096, "4Ki")]
    [InlineData(10L << 30, "10Gi")]
    [InlineData(1536L << 20, "1536Mi")]
    [InlineData(3L << 50, "3Pi")]
    [InlineData(12288, "12Ki")]
    public void Bytes_format_as_the_largest_exact_binary_unit(long bytes, string expected)
    {
        Assert.Equal(expected, VolumeSize.Format(bytes));
        Assert.True(VolumeSize.TryParse(expected, out var back, out _));
        Assert.Equal(bytes, back);
    }
}
