using System.Globalization;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>Parses sizes such as "4096", "4KiB", "64MiB", "2GiB" (also B and TiB).</summary>
public static class SizeParser
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("B", 1),
    ];

    public static long Parse(string text)
    {
        var trimmed = text.Trim();
        foreach (var (suffix, factor) in Units)
        {
            if (trimmed.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                return Scale(trimmed[..^suffix.Length].Trim(), factor, text);
            }
        }
        return Scale(trimmed, 1, text);
    }

    private static long Scale(string number, long factor, string original)
    {
        if (!long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            throw new FormatException($"'{original}' is not a size (examples: 4096, 4KiB, 64MiB, 1GiB)");
        }
        try
        {
            return checked(value * factor);
        }
        catch (OverflowException)
        {
            throw new FormatException($"size '{original}' is too large");
        }
    }
}
