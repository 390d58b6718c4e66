using System.Globalization;

namespace FeitianK8s.Core.Common;

/// <summary>Parses and prints byte sizes with binary suffixes: "4096", "4KiB", "64MiB", "1GiB", "2TiB".</summary>
public static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10),
        ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1),
    ];

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var trimmed = text.Trim();
        long factor = 1;
        foreach (var (suffix, unitFactor) in Units)
        {
            if (trimmed.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                factor = unitFactor;
                trimmed = trimmed[..^suffix.Length].TrimEnd();
                break;
            }
        }
        if (!decimal.TryParse(trimmed, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number) || number < 0)
        {
            return false;
        }
        try
        {
            var value = number * factor;
            if (value != decimal.Truncate(value) || value > long.MaxValue)
            {
                return false;
            }
            bytes = (long)value;
            return true;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes)
            ? bytes
            : throw new FormatException($"'{text}' is not a size (examples: 4096, 512KiB, 64MiB, 1GiB, 2TiB)");

    public static string Format(long bytes)
    {
        foreach (var (suffix, factor) in Units.Take(4))
        {
            if (bytes >= factor && bytes % factor == 0)
            {
                return $"{bytes / factor}{suffix}";
            }
        }
        foreach (var (suffix, factor) in Units.Take(4))
        {
            if (bytes >= factor)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{(double)bytes / factor:0.##}{suffix}");
            }
        }
        return $"{bytes}B";
    }
}
