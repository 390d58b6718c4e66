using System.Globalization;
using System.Text.RegularExpressions;

namespace FeitianK8s.Operator.Volumes;

/// <summary>
/// Volume sizes: a Kubernetes quantity (<c>10Gi</c>, <c>500M</c>, <c>1.5Gi</c>, <c>4096</c>) parsed to
/// bytes and rounded up to the master's 4 KiB block; and bytes written back as the largest exact
/// binary unit.
/// </summary>
public static partial class VolumeSize
{
    public const long BlockSize = 4096;
    public const long MaxBytes = long.MaxValue / BlockSize * BlockSize;

    private static readonly (string Suffix, decimal Factor)[] Units =
    [
        ("Ki", 1L << 10), ("Mi", 1L << 20), ("Gi", 1L << 30), ("Ti", 1L << 40), ("Pi", 1L << 50), ("Ei", 1L << 60),
        ("k", 1e3m), ("M", 1e6m), ("G", 1e9m), ("T", 1e12m), ("P", 1e15m), ("E", 1e18m),
    ];

    /// <summary>Bytes of <paramref name="text"/> rounded up to a multiple of 4 KiB; false with a message for anything else.</summary>
    public static bool TryParse(string? text, out long bytes, out string error)
    {
        bytes = 0;
        var m = Quantity().Match(text ?? "");
        if (!m.Success)
        {
            error = $"spec.size '{text}' is not a size such as 10Gi, 500Mi or 1073741824";
            return false;
        }
        var factor = m.Groups[2].Success ? Units.Single(u => u.Suffix == m.Groups[2].Value).Factor : 1m;
        decimal value;
        try
        {
            value = decimal.Parse(m.Groups[1].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture) * factor;
        }
        catch (OverflowException)
        {
            error = $"spec.size '{text}' is larger than the largest volume ({MaxBytes} bytes)";
            return false;
        }
        if (value <= 0)
        {
            error = $"spec.size '{text}' must be more than zero";
            return false;
        }
        var rounded = decimal.Ceiling(value / BlockSize) * BlockSize;
        if (rounded > MaxBytes)
        {
            error = $"spec.size '{text}' is larger than the largest volume ({MaxBytes} bytes)";
            return false;
        }
        bytes = (long)rounded;
        error = "";
        return true;
    }

    /// <summary>The quantity with the largest binary unit that states <paramref name="bytes"/> exactly (4096 → 4Ki, 3 GiB → 3Gi).</summary>
    public static string Format(long bytes)
    {
        string[] suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
        var i = 0;
        var v = bytes;
        while (i < suffixes.Length - 1 && v != 0 && v % 1024 == 0)
        {
            v /= 1024;
            i++;
        }
        return v.ToString(CultureInfo.InvariantCulture) + suffixes[i];
    }

    [GeneratedRegex(@"^\s*([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\s*$")]
    private static partial Regex Quantity();
}
