using System.Text.Json.Nodes;
using FeitianK8s.Operator.Tests.Helm;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// The chart's Grafana dashboard (a ConfigMap Grafana's sidecar picks up) and its Prometheus
/// Operator objects, rendered through the helm-template replay: the ServiceMonitor and the
/// PrometheusRule exist only when the cluster serves monitoring.coreos.com/v1 (helm template
/// --api-versions). That every metric they name is exported is checked against real scrapes
/// in FeitianK8s.EndToEnd.Tests (MonitoringMetricsTests).
/// </summary>
public sealed class HelmMonitoringTests(ITestOutputHelper output)
{
    private const string Monitoring = "monitoring.coreos.com/v1";

    [Fact]
    public async Task Dashboard_ships_as_a_configmap_with_the_grafana_sidecar_label_and_valid_dashboard_json()
    {
        var chart = await HelmRenderer.RenderAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, []));
        var map = Assert.Single(chart.OfKind("ConfigMap"), d => d.Name.EndsWith("-grafana-dashboard", StringComparison.Ordinal));
        Assert.Equal("1", map.Object["metadata"]!["labels"]!["grafana_dashboard"]!.GetValue<string>());
        Assert.Equal(HelmScenarios.Namespace, map.Namespace);
        var json = map.Object["data"]!["feitian-overview.json"]!.GetValue<string>();
        Assert.Equal(File.ReadAllText(Path.Combine(HelmRenderer.ChartDirectory, "dashboards", "feitian-overview.json")).Trim(), json);
        var dashboard = JsonNode.Parse(json)!;
        Assert.Equal("feitian-overview", dashboard["uid"]!.GetValue<string>());
        var titles = dashboard["panels"]!.AsArray().Select(p => p!["title"]!.GetValue<string>()).ToList();
        foreach (var wanted in new[] { "Capacity", "Use", "IOPS per volume", "Throughput per volume", "Latency per volume (p99)", "Requests per chunk server",
                     "Latency per chunk server (p99)", "Rebuild remaining", "Scrub progress", "Leader", "Commit lag (entries behind the leader)" })
        {
            Assert.Contains(wanted, titles);
        }
        // Every query panel reads the data source variable, so the dashboard works with any Prometheus.
        foreach (var panel in dashboard["panels"]!.AsArray().Where(p => p!["type"]!.GetValue<string>() != "row"))
        {
            Assert.Equal("${datasource}", panel!["datasource"]!["uid"]!.GetValue<string>());
            Assert.NotEmpty(panel["targets"]!.AsArray());
        }
        // No Prometheus Operator in this cluster: no object of its kinds.
        Assert.Empty(chart.OfKind("ServiceMonitor"));
        Assert.Empty(chart.OfKind("PrometheusRule"));
    }

    [Fact]
    public async Task ServiceMonitor_and_PrometheusRule_render_only_when_the_cluster_serves_their_crds()
    {
        var chart = await HelmRenderer.RenderAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, []) { ApiVersions = [Monitoring] });
        var monitor = chart.Single("ServiceMonitor");
        Assert.Equal(Monitoring, monitor.Object["apiVersion"]!.GetValue<string>());
        Assert.Equal("feitian", monitor.Object["spec"]!["selector"]!["matchLabels"]!["app.kubernetes.io/name"]!.GetValue<string>());
        Assert.True(monitor.Object["spec"]!["namespaceSelector"]!["any"]!.GetValue<bool>());
        Assert.Equal("http-metrics", monitor.Object["spec"]!["endpoints"]![0]!["port"]!.GetValue<string>());

        var rules = chart.Single("PrometheusRule").Object["spec"]!["groups"]![0]!["rules"]!.AsArray();
        var alerts = rules.ToDictionary(r => r!["alert"]!.GetValue<string>(), r => r!);
        Assert.Equal(["FeitianChunkServerDown", "FeitianDegradedChunks", "FeitianDiskAbove85Percent", "FeitianNoMasterLeader", "FeitianScrubFoundCorruption"],
            alerts.Keys.Order(StringComparer.Ordinal).ToList());
        Assert.Equal("10m", alerts["FeitianDegradedChunks"]["for"]!.GetValue<string>());
        Assert.EndsWith("> 0.85", alerts["FeitianDiskAbove85Percent"]["expr"]!.GetValue<string>());
        // Prometheus's own template placeholders survive Helm's rendering.
        Assert.Contains("{{ $labels.instance }}", alerts["FeitianScrubFoundCorruption"]["annotations"]!["description"]!.GetValue<string>());

        // The settings reach the rules; switching both off leaves only the dashboard.
        var tuned = await HelmRenderer.RenderAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, Values("""
            { "monitoring": { "prometheusRule": { "degradedForMinutes": 3, "diskUsedRatio": 0.9 } } }
            """)) { ApiVersions = [Monitoring] });
        var tunedAlerts = tuned.Single("PrometheusRule").Object["spec"]!["groups"]![0]!["rules"]!.AsArray();
        Assert.Equal("3m", tunedAlerts.Single(r => r!["alert"]!.GetValue<string>() == "FeitianDegradedChunks")!["for"]!.GetValue<string>());
        Assert.EndsWith("> 0.9", tunedAlerts.Single(r => r!["alert"]!.GetValue<string>() == "FeitianDiskAbove85Percent")!["expr"]!.GetValue<string>());

        var off = await HelmRenderer.RenderAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, Values("""
            { "monitoring": { "serviceMonitor": { "enabled": false }, "prometheusRule": { "enabled": false }, "grafanaDashboard": { "enabled": false } } }
            """)) { ApiVersions = [Monitoring] });
        Assert.Empty(off.OfKind("ServiceMonitor"));
        Assert.Empty(off.OfKind("PrometheusRule"));
        Assert.DoesNotContain(off.OfKind("ConfigMap"), d => d.Name.EndsWith("-grafana-dashboard", StringComparison.Ordinal));
    }

    private static JsonObject Values(string json) => JsonNode.Parse(json)!.AsObject();
}
