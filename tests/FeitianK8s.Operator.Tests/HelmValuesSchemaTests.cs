using System.Text.Json.Nodes;
using FeitianK8s.Operator.Tests.Helm;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// charts/feitian/values.schema.json, checked as `helm install` checks it (the helm-template replay
/// validates the coalesced values with gojsonschema, the library Helm uses): bad values are refused
/// with a message naming the key, and nothing is rendered. NOTES.txt tells the next steps.
/// </summary>
public sealed class HelmValuesSchemaTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("""{ "operator": { "replicas": "two" } }""", "operator.replicas: Invalid type. Expected: integer, given: string")]
    [InlineData("""{ "opertor": { "replicas": 1 } }""", "Additional property opertor is not allowed")]
    [InlineData("""{ "operator": { "logLevel": "Verbose" } }""", "operator.logLevel")]
    [InlineData("""{ "operator": { "httpPort": 70000 } }""", "operator.httpPort: Must be less than or equal to 65535")]
    [InlineData("""{ "storageCluster": { "masters": { "replicas": 2 } } }""", "storageCluster.masters.replicas")]
    [InlineData("""{ "storageCluster": { "rebuild": { "bandwidthPerNode": "fast" } } }""", "storageCluster.rebuild.bandwidthPerNode")]
    [InlineData("""{ "storageCluster": { "chunkServers": { "dataDirs": [] } } }""", "storageCluster.chunkServers.dataDirs")]
    [InlineData("""{ "monitoring": { "prometheusRule": { "diskUsedRatio": 1.5 } } }""", "monitoring.prometheusRule.diskUsedRatio")]
    [InlineData("""{ "imagePullSecrets": [ { "secret": "regcred" } ] }""", "name is required")]
    public async Task Bad_values_are_refused_with_a_message_naming_the_key(string values, string expected)
    {
        var result = await HelmRenderer.RunAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, JsonNode.Parse(values)!.AsObject()));
        Assert.False(result.Succeeded);
        Assert.Contains("values don't meet the specifications of the schema(s) in the following chart(s):", result.StandardError);
        Assert.Contains(expected, result.StandardError);
        Assert.Empty(result.StandardOutput);
    }

    [Fact]
    public async Task Every_scenario_and_the_defaults_pass_the_schema()
    {
        foreach (var (name, release) in HelmScenarios.All)
        {
            var result = await HelmRenderer.RunAsync(output, release);
            Assert.True(result.Succeeded, $"{name}: {result.StandardError}");
        }
    }

    [Fact]
    public async Task Notes_tell_the_next_steps()
    {
        var result = await HelmRenderer.RunAsync(output, new HelmRelease("feitian", HelmScenarios.Namespace, []) { Notes = true });
        Assert.True(result.Succeeded, result.StandardError);
        Assert.Contains("kubectl -n feitian-system rollout status deployment/feitian", result.StandardOutput);
        Assert.Contains("kubectl label node NODE feitian.io/storage=true", result.StandardOutput);
        Assert.Contains("web console", result.StandardOutput);
        Assert.Contains("grafana_dashboard=1", result.StandardOutput);
        Assert.Contains("no monitoring.coreos.com/v1", result.StandardOutput);

        var withCluster = await HelmRenderer.RunAsync(output, HelmScenarios.All["storage-cluster"] with { Notes = true, ApiVersions = ["monitoring.coreos.com/v1"] });
        Assert.True(withCluster.Succeeded, withCluster.StandardError);
        Assert.Contains("get storagecluster main -w", withCluster.StandardOutput);
        Assert.DoesNotContain("no monitoring.coreos.com/v1", withCluster.StandardOutput);
    }
}
