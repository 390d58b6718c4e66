using System.Text;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// A volume host's metrics (the RAF engine's per-volume series, its NBD server's), published as a
/// Prometheus text file next to its NBD socket (<c>KEY.metrics</c>), rewritten every few seconds
/// and once at stop, through a temp file renamed over the old one so a reader sees a whole file.
/// The node plugin's /metrics includes the files of its staged volumes
/// (<see cref="NodeMetricsExposition"/>): a volume host opens no port of its own.
/// </summary>
public sealed class VolumeHostMetrics(string path, ILogger logger)
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    public static string PathFor(string socketPath) => Path.ChangeExtension(socketPath, ".metrics");

    public async Task RunAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            do
            {
                await WriteAsync(stop).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task WriteAsync(CancellationToken ct)
    {
        var temp = path + ".tmp";
        try
        {
            await using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
            {
                await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(file, ct).ConfigureAwait(false);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (IOException e)
        {
            // Metrics must never stop the data path.
            logger.LogWarning("Cannot write volume metrics to {Path}: {Error}", path, e.Message);
        }
    }
}

/// <summary>
/// The node plugin's /metrics: its own registry followed by every staged volume's
/// <see cref="VolumeHostMetrics"/> file, merged into one exposition (each metric family once, as
/// Prometheus requires). From a volume host only the feitian_* families are kept (its process and
/// runtime series would clash with the plugin's), and a series without a "volume" label gets the
/// volume's id as one (its NBD server's, say), so every series stays unique.
/// </summary>
public sealed class NodeMetricsExposition(NodeStateStore store, ILogger<NodeMetricsExposition> logger)
{
    public async Task<string> BuildAsync(CancellationToken ct)
    {
        using var own = new MemoryStream();
        await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(own, ct).ConfigureAwait(false);
        var merger = new PrometheusTextMerger();
        merger.Add(Encoding.UTF8.GetString(own.ToArray()), volume: null);
        foreach (var volume in store.All().OrderBy(v => v.VolumeId, StringComparer.Ordinal))
        {
            var file = VolumeHostMetrics.PathFor(volume.SocketPath);
            string text;
            try
            {
                text = await File.ReadAllTextAsync(file, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                continue; // the host has not written its first file yet
            }
            catch (IOException e)
            {
                logger.LogWarning("Cannot read the metrics of volume {Volume} from {Path}: {Error}", volume.VolumeId, file, e.Message);
                continue;
            }
            merger.Add(text, volume.VolumeId);
        }
        return merger.ToString();
    }
}

/// <summary>Merges Prometheus text expositions (format 0.0.4) by metric family, keeping the first HELP and TYPE of each.</summary>
public sealed class PrometheusTextMerger
{
    private sealed class Family(string name)
    {
        public string Name { get; } = name;
        public string? Help { get; set; }
        public string? Type { get; set; }
        public List<string> Samples { get; } = [];
    }

    private readonly List<Family> _order = [];
    private readonly Dictionary<string, Family> _families = new(StringComparer.Ordinal);

    /// <summary>Adds an exposition; with a <paramref name="volume"/>, only its feitian_* families, each series labelled with the volume.</summary>
    public void Add(string exposition, string? volume)
    {
        Family? current = null;
        foreach (var raw in exposition.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }
            if (line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var rest = line[7..];
                var space = rest.IndexOf(' ');
                var name = space < 0 ? rest : rest[..space];
                current = volume is not null && !name.StartsWith("feitian_", StringComparison.Ordinal) ? null : FamilyOf(name);
                if (current is not null)
                {
                    if (line[2] == 'H')
                    {
                        current.Help ??= line;
                    }
                    else
                    {
                        current.Type ??= line;
                    }
                }
                continue;
            }
            if (line[0] == '#')
            {
                continue;
            }
            if (volume is null)
            {
                (current ?? FamilyOf(SeriesName(line))).Samples.Add(line);
            }
            else if (current is not null && SeriesName(line).StartsWith(current.Name, StringComparison.Ordinal))
            {
                current.Samples.Add(WithVolume(line, volume));
            }
        }
    }

    private Family FamilyOf(string name)
    {
        if (!_families.TryGetValue(name, out var family))
        {
            family = new Family(name);
            _families[name] = family;
            _order.Add(family);
        }
        return family;
    }

    private static string SeriesName(string sample)
    {
        var end = sample.IndexOfAny(['{', ' ']);
        return end < 0 ? sample : sample[..end];
    }

    /// <summary>The sample with a volume="…" label added, unless it already has a volume label.</summary>
    internal static string WithVolume(string sample, string volume)
    {
        var label = $"volume=\"{Escape(volume)}\"";
        var brace = sample.IndexOf('{');
        var space = sample.IndexOf(' ');
        if (brace < 0 || (space >= 0 && space < brace))
        {
            return space < 0 ? sample : $"{sample[..space]}{{{label}}}{sample[space..]}";
        }
        if (LabelNames(sample, brace).Contains("volume"))
        {
            return sample;
        }
        return sample[brace + 1] == '}'
            ? $"{sample[..(brace + 1)]}{label}{sample[(brace + 1)..]}"
            : $"{sample[..(brace + 1)]}{label},{sample[(brace + 1)..]}";
    }

    /// <summary>The label names of a sample's {…} block (values may hold escaped quotes, commas and braces).</summary>
    private static List<string> LabelNames(string sample, int brace)
    {
        var names = new List<string>();
        var i = brace + 1;
        while (i < sample.Length && sample[i] != '}')
        {
            var eq = sample.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }
            names.Add(sample[i..eq].Trim(' ', ','));
            i = eq + 2; // past ="
            while (i < sample.Length && sample[i] != '"')
            {
                i += sample[i] == '\\' ? 2 : 1;
            }
            i++; // past the closing quote
            if (i < sample.Length && sample[i] == ',')
            {
                i++;
            }
        }
        return names;
    }

    private static string Escape(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    public override string ToString()
    {
        var text = new StringBuilder();
        foreach (var family in _order.Where(f => f.Samples.Count > 0 || f.Help is not null))
        {
            if (family.Help is not null)
            {
                text.Append(family.Help).Append('\n');
            }
            if (family.Type is not null)
            {
                text.Append(family.Type).Append('\n');
            }
            foreach (var sample in family.Samples)
            {
                text.Append(sample).Append('\n');
            }
        }
        return text.ToString();
    }
}
