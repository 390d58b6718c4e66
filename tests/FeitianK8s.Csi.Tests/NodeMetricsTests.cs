using System.Globalization;
using System.Text.RegularExpressions;
using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Per-volume metrics under Kubernetes: a staged volume's engine runs in its own volume host
/// process, which opens no port; the node plugin's /metrics (--metrics-port) carries its series.
/// Every per-volume metric the chart's Grafana dashboard names appears there, labelled with the
/// volume, after real writes through the volume's block device.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed partial class NodeMetricsTests : IDisposable
{
    private readonly CsiFixture _f;

    public NodeMetricsTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    [Fact]
    public async Task Node_plugin_metrics_carry_every_per_volume_series_the_dashboard_names_for_a_staged_volume()
    {
        // What the dashboard aggregates "by (volume" (the per-volume panels).
        var dashboard = await File.ReadAllTextAsync(RepositoryPaths.Combine("charts", "feitian", "dashboards", "feitian-overview.json"));
        var perVolume = PerVolumeExpression().Matches(dashboard).SelectMany(m => MetricName().Matches(m.Value).Select(n => n.Value)).ToHashSet(StringComparer.Ordinal);
        Assert.True(perVolume.Count >= 4, $"only {perVolume.Count} per-volume metrics in the dashboard: {string.Join(", ", perVolume)}");

        var c = _f.Client;
        var capability = Csi.Block();
        var staging = _f.Root.Combine("kubelet", "metrics", "staging");
        var id = (await c.Controller.CreateVolumeAsync(Csi.Create("pvc-metrics", 16 * Csi.MiB, capability))).Volume.VolumeId;
        await c.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = capability });
        await c.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = capability });
        try
        {
            var record = new NodeStateStore(_f.NodeAStateDir).Get(id)!;
            var data = Csi.Pattern((int)Csi.MiB, seed: 77);
            Csi.WriteDevice(record.LoopDevice, 0, data);
            Assert.Equal(data, Csi.ReadDevice(record.LoopDevice, 0, data.Length));

            var url = $"{_f.Driver.Host.MetricsAddress ?? throw new InvalidOperationException("the driver serves no /metrics")}/metrics";
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var label = $"volume=\"{id}\"";
            string exposition;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            // The host rewrites its metrics file every few seconds: scrape until the write is counted.
            while (true)
            {
                exposition = await http.GetStringAsync(url);
                if (WrittenBytes(exposition, label) >= data.Length || DateTime.UtcNow > deadline)
                {
                    break;
                }
                await Task.Delay(1000);
            }
            Assert.True(WrittenBytes(exposition, label) >= data.Length, $"feitian_raf_write_bytes_total{{{label}}} not counted:\n{exposition}");
            var lines = exposition.Split('\n');
            Assert.All(perVolume, metric => Assert.Contains(lines, l => l.StartsWith(metric, StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal)));
            // One exposition: each family's TYPE line once, whatever number of volumes.
            var types = lines.Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).ToList();
            Assert.Equal(types.Count, types.Distinct(StringComparer.Ordinal).Count());
            // The NBD server's series of that host carry the volume too.
            Assert.Contains(lines, l => l.StartsWith("feitian_nbd_", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));
        }
        finally
        {
            await c.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
            await c.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
            await c.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }

    [Fact]
    public void Merging_keeps_each_family_once_and_labels_a_volume_hosts_series_with_its_volume()
    {
        var merger = new PrometheusTextMerger();
        merger.Add("# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n"
            + "# HELP feitian_raf_write_bytes_total Bytes.\n# TYPE feitian_raf_write_bytes_total counter\n", volume: null);
        foreach (var volume in new[] { "a", "b\"q" })
        {
            merger.Add("# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1\n"
                + "# HELP feitian_raf_write_bytes_total Bytes.\n# TYPE feitian_raf_write_bytes_total counter\n"
                + $"feitian_raf_write_bytes_total{{volume=\"{volume.Replace("\"", "\\\"", StringComparison.Ordinal)}\"}} 7\n"
                + "# HELP feitian_nbd_requests_total Requests.\n# TYPE feitian_nbd_requests_total counter\n"
                + "feitian_nbd_requests_total{op=\"write\"} 2\n"
                + "# HELP feitian_nbd_connections_total Connections.\n# TYPE feitian_nbd_connections_total counter\nfeitian_nbd_connections_total 1\n", volume);
        }
        var text = merger.ToString();
        Assert.Equal(
            """
            # HELP process_cpu_seconds_total CPU.
            # TYPE process_cpu_seconds_total counter
            process_cpu_seconds_total 3
            # HELP feitian_raf_write_bytes_total Bytes.
            # TYPE feitian_raf_write_bytes_total counter
            feitian_raf_write_bytes_total{volume="a"} 7
            feitian_raf_write_bytes_total{volume="b\"q"} 7
            # HELP feitian_nbd_requests_total Requests.
            # TYPE feitian_nbd_requests_total counter
            feitian_nbd_requests_total{volume="a",op="write"} 2
            feitian_nbd_requests_total{volume="b\"q",op="write"} 2
            # HELP feitian_nbd_connections_total Connections.
            # TYPE feitian_nbd_connections_total counter
            feitian_nbd_connections_total{volume="a"} 1
            feitian_nbd_connections_total{volume="b\"q"} 1

            """.ReplaceLineEndings("\n"), text);
    }

    private static double WrittenBytes(string exposition, string label) =>
        exposition.Split('\n')
            .Where(l => l.StartsWith("feitian_raf_write_bytes_total{", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal))
            .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture))
            .DefaultIfEmpty(0)
            .Sum();

    [GeneratedRegex(@"""expr"": ""[^""]*by \(volume[^""]*""")]
    private static partial Regex PerVolumeExpression();

    [GeneratedRegex(@"feitian_[a-z0-9_]*[a-z0-9]")]
    private static partial Regex MetricName();
}
