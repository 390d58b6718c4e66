using System.Globalization;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>Durations on the command line: a whole number with a unit s, m, h or d (e.g. 90s, 30m, 2h, 7d), or 0.</summary>
public static class DurationText
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        text = text?.Trim() ?? "";
        if (text == "0")
        {
            return true;
        }
        if (text.Length < 2 || !long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > 100_000)
        {
            return false;
        }
        TimeSpan? unit = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(1),
            'm' => TimeSpan.FromMinutes(1),
            'h' => TimeSpan.FromHours(1),
            'd' => TimeSpan.FromDays(1),
            _ => null,
        };
        if (unit is not { } u)
        {
            return false;
        }
        duration = u * n;
        return true;
    }
}
