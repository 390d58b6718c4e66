using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// <c>spec.rebuild</c> as chunk-server flags. The bandwidth goes out in plain bytes per second,
/// converted here by Kubernetes' own quantity rules (100Mi = 100×2²⁰, 100M = 100×10⁶), so the
/// chunk server cannot read the suffix differently.
/// </summary>
public static class RebuildFlags
{
    public const string Bandwidth = "--rebuild-bandwidth";
    public const string Concurrency = "--rebuild-concurrency";
    public const int MaxConcurrency = 64;
    public const string Scrub = "--scrub-bandwidth";
    public const string DeadAfter = "--dead-after";
    public const string MaxRebuilds = "--max-rebuilds";

    /// <summary>What is wrong with <paramref name="spec"/>; empty when the flags can be built.</summary>
    public static IReadOnlyList<string> Errors(RebuildSpec spec)
    {
        var errors = new List<string>();
        if (!string.IsNullOrWhiteSpace(spec.BandwidthPerNode) && !TryBytesPerSecond(spec.BandwidthPerNode, out _))
        {
            errors.Add($"spec.rebuild.bandwidthPerNode '{spec.BandwidthPerNode}' is not a whole number of bytes per second (e.g. 100Mi, 500M; 0 = unlimited)");
        }
        if (!string.IsNullOrWhiteSpace(spec.ScrubBandwidthPerNode) && !TryBytesPerSecond(spec.ScrubBandwidthPerNode, out _))
        {
            errors.Add($"spec.rebuild.scrubBandwidthPerNode '{spec.ScrubBandwidthPerNode}' is not a whole number of bytes per second (e.g. 4Mi; 0 = off)");
        }
        if (spec.DeadAfterSeconds is < 5 or > 86_400)
        {
            errors.Add($"spec.rebuild.deadAfterSeconds must be between 5 and 86400, got {spec.DeadAfterSeconds}");
        }
        if (spec.MaxRebuilds is < 1 or > 10_000)
        {
            errors.Add($"spec.rebuild.maxRebuilds must be between 1 and 10000, got {spec.MaxRebuilds}");
        }
        if (spec.ConcurrentPerNode is < 1 or > MaxConcurrency)
        {
            errors.Add($"spec.rebuild.concurrentPerNode must be between 1 and {MaxConcurrency}, got {spec.ConcurrentPerNode}");
        }
        return errors;
    }

    /// <summary>
    /// The flags for every chunk-server pod: the bandwidth only when set (absent = unlimited), the
    /// concurrency always (its default, 2, is the CRD's). Throws <see cref="ArgumentException"/> on an invalid spec.
    /// </summary>
    public static IReadOnlyList<string> Args(RebuildSpec spec)
    {
        var errors = Errors(spec);
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }
        var args = new List<string>();
        if (!string.IsNullOrWhiteSpace(spec.BandwidthPerNode) && TryBytesPerSecond(spec.BandwidthPerNode, out var bytes))
        {
            args.AddRange([Bandwidth, bytes.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        args.AddRange([Concurrency, spec.ConcurrentPerNode.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        if (!string.IsNullOrWhiteSpace(spec.ScrubBandwidthPerNode) && TryBytesPerSecond(spec.ScrubBandwidthPerNode, out var scrub))
        {
            args.AddRange([Scrub, scrub.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        return args;
    }

    /// <summary>The master's self-healing flags: --dead-after and --max-rebuilds.</summary>
    public static IReadOnlyList<string> MasterArgs(RebuildSpec spec) =>
    [
        DeadAfter, spec.DeadAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
        MaxRebuilds, spec.MaxRebuilds.ToString(System.Globalization.CultureInfo.InvariantCulture),
    ];

    public static bool TryBytesPerSecond(string quantity, out long bytes)
    {
        bytes = 0;
        decimal value;
        try
        {
            value = new ResourceQuantity(quantity.Trim()).ToDecimal();
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            return false;
        }
        if (value < 0 || value != decimal.Truncate(value) || value > long.MaxValue)
        {
            return false;
        }
        bytes = (long)value;
        return true;
    }
}
