using System.Text.RegularExpressions;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Every metric the chart's Grafana dashboard and PrometheusRule name is exported by a real
/// component: a `feitian up` cluster gets volume and file I/O, then the /metrics of its master,
/// a chunk server and the process running the volume engines and NBD server are scraped.
/// </summary>
public sealed partial class MonitoringMetricsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Every_metric_the_dashboard_and_the_alert_rules_name_is_exported_by_a_running_component()
    {
        var chart = RepositoryPaths.Combine("charts", "feitian");
        var named = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var source in Directory.GetFiles(Path.Combine(chart, "dashboards"), "*.json").Append(Path.Combine(chart, "templates", "prometheusrule.yaml")))
        {
            named.UnionWith(MetricName().Matches(File.ReadAllText(source)).Select(m => m.Value));
        }
        Assert.True(named.Count >= 20, $"only {named.Count} metric names found in the dashboard and rules");

        using var data = new TempDirectory("monitoring");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--chunkservers", "3", "--racks", "3", "--scrub-bandwidth", "64Mi"]);
        await up.RunCliCheckedAsync("volume", "create", "metrics-vol", "--size", "16MiB");
        // Volume I/O through a real NBD client: the engine's per-volume read and write series appear.
        await ExternalTool.RunCheckedAsync(output, "qemu-io", ["-f", "raw", up.NbdUri("metrics-vol"), "-c", "write -P 0x5a 0 1M", "-c", "read -P 0x5a 0 1M", "-c", "flush"],
            TimeSpan.FromMinutes(2));
        // File I/O straight to the chunk servers: appends and reads.
        var file = Path.Combine(data.Path, "payload.bin");
        await File.WriteAllBytesAsync(file, TestData.Random(1 << 20, seed: 15));
        await up.RunCliCheckedAsync("fs", "put", file, "/metrics/payload.bin");
        await up.RunCliCheckedAsync("fs", "get", "/metrics/payload.bin", Path.Combine(data.Path, "back.bin"));

        var master = ServerEndpoints.TryRead(Path.Combine(data.Path, "master"))?.Http ?? throw new InvalidOperationException("the master wrote no endpoints");
        var chunkServers = Enumerable.Range(1, 3).Select(i => ServerEndpoints.TryRead(Path.Combine(data.Path, $"chunkserver-{i}"))?.Http
            ?? throw new InvalidOperationException($"chunkserver-{i} wrote no endpoints")).ToList();
        var processMetrics = up.ProcessMetricsUrl ?? throw new InvalidOperationException("feitian up printed no metrics URL");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };

        var missing = named.ToHashSet(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        // A scrub pass and heartbeats fill some series a few seconds later: scrape until all appear (or the deadline).
        while (missing.Count > 0 && DateTime.UtcNow < deadline)
        {
            var exported = new HashSet<string>(StringComparer.Ordinal);
            foreach (var url in chunkServers.Select(c => $"{c}/metrics").Append($"{master}/metrics").Append(processMetrics))
            {
                exported.UnionWith(ExportedNames(await http.GetStringAsync(url)));
            }
            missing.RemoveWhere(name => exported.Contains(name));
            if (missing.Count > 0)
            {
                output.WriteLine($"not exported yet: {string.Join(", ", missing)}");
                await Task.Delay(2000);
            }
        }
        output.WriteLine($"{named.Count} metric names checked: {string.Join(", ", named)}");
        Assert.Empty(missing);
    }

    /// <summary>Names of the series in a Prometheus text exposition (histograms also by their _bucket, _sum and _count series).</summary>
    private static IEnumerable<string> ExportedNames(string exposition) =>
        exposition.Split('\n')
            .Where(line => line.Length > 0 && line[0] != '#')
            .Select(line => SeriesName().Match(line).Value)
            .Where(name => name.Length > 0);

    [GeneratedRegex(@"feitian_[a-z0-9_]*[a-z0-9]")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"^[a-zA-Z_:][a-zA-Z0-9_:]*")]
    private static partial Regex SeriesName();
}
