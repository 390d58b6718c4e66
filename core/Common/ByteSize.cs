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
        return TryScale(trimmed, factor, out bytes);
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes)
            ? bytes
            : throw new FormatException($"'{text}' is not a size (examples: 4096, 512KiB, 64MiB, 1GiB, 2TiB)");

    private static readonly (string Suffix, long Factor)[] QuantityUnits =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("Ki", 1L << 10), ("Mi", 1L << 20), ("Gi", 1L << 30), ("Ti", 1L << 40), ("Pi", 1L << 50),
        ("k", 1_000L), ("M", 1_000_000L), ("G", 1_000_000_000L), ("T", 1_000_000_000_000L), ("P", 1_000_000_000_000_000L),
    ];

    /// <summary>
    /// Parses a byte count written as a Kubernetes quantity, the form StorageCluster fields use:
    /// digits with an optional suffix, binary <c>Ki Mi Gi Ti Pi</c> (×1024ⁿ) or decimal <c>k M G T P</c>
    /// (×1000ⁿ), case-sensitive as in Kubernetes; <c>KiB MiB GiB TiB</c> are accepted as binary too.
    /// Unlike <see cref="TryParse"/>, a bare <c>M</c> here means 10⁶, as Kubernetes has it.
    /// </summary>
    public static bool TryParseQuantity(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var trimmed = text.Trim();
        long factor = 1;
        foreach (var (suffix, unitFactor) in QuantityUnits)
        {
            if (trimmed.EndsWith(suffix, StringComparison.Ordinal))
            {
                factor = unitFactor;
                trimmed = trimmed[..^suffix.Length];
                break;
            }
        }
        return TryScale(trimmed, factor, out bytes);
    }

    public static long ParseQuantity(string text) =>
        TryParseQuantity(text, out var bytes)
            ? bytes
            : throw new FormatException($"'{text}' is not a byte quantity (examples: 104857600, 100Mi, 1Gi, 500M)");

    private static bool TryScale(string number, long factor, out long bytes)
    {
        bytes = 0;
        if (!decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value < 0)
        {
            return false;
        }
        try
        {
            var scaled = value * factor;
            if (scaled != decimal.Truncate(scaled) || scaled > long.MaxValue)
            {
                return false;
            }
            bytes = (long)scaled;
            return true;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

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

    private static readonly string[] HumanUnits = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    /// <summary>For people: binary units with a space and at most three significant digits ("252 GiB", "1.5 MiB", "512 B").</summary>
    public static string Human(double bytes)
    {
        var value = Math.Max(0, bytes);
        var unit = 0;
        while (value >= 1024 && unit < HumanUnits.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        var format = unit == 0 || value >= 100 ? "0" : value >= 10 ? "0.#" : "0.##";
        return string.Create(CultureInfo.InvariantCulture, $"{value.ToString(format, CultureInfo.InvariantCulture)} {HumanUnits[unit]}");
    }
}
