using System.Text.Json.Nodes;
using FeitianK8s.Operator.Tests.Schema;

namespace FeitianK8s.Operator.Tests.Helm;

/// <summary>The releases the chart is rendered with: defaults, and each toggle of values.yaml.</summary>
public static class HelmScenarios
{
    public const string Namespace = "feitian-system";

    public static IReadOnlyDictionary<string, HelmRelease> All { get; } = new Dictionary<string, HelmRelease>
    {
        ["defaults"] = new("feitian", Namespace, []),
        ["release-name-without-chart-name"] = new("prod", Namespace, []),
        // Helm refuses release names over 53 characters; every derived name must still be valid.
        ["longest-release-name"] = new("long-" + new string('x', 48), Namespace, []),
        ["storage-cluster"] = new("feitian", Namespace, Values("""
            { "storageCluster": { "create": true, "name": "main" }, "operator": { "watchNamespace": "feitian-system" } }
            """)),
        ["everything-optional-off"] = new("feitian", Namespace, Values("""
            { "serviceAccount": { "create": false }, "rbac": { "create": false }, "metrics": { "service": { "enabled": false } } }
            """)),
        ["existing-service-account-with-rbac"] = new("ops", "storage-ops", Values("""
            { "serviceAccount": { "create": false, "name": "storage-operator" } }
            """)),
        ["custom-placement"] = new("edge", "infra", Values("""
            {
              "serviceAccount": { "name": "feitian-ops" },
              "imagePullSecrets": [ { "name": "regcred" } ],
              "metrics": { "service": { "port": 9091 } },
              "operator": {
                "replicas": 1, "httpPort": 9090, "logLevel": "Debug", "watchNamespace": "storage",
                "image": { "tag": "0.2.0-rc.1", "pullPolicy": "Always" },
                "nodeSelector": { "kubernetes.io/os": "linux", "node-role.kubernetes.io/infra": "" },
                "tolerations": [ { "key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule" } ],
                "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                  { "matchExpressions": [ { "key": "kubernetes.io/arch", "operator": "In", "values": [ "amd64", "arm64" ] } ] } ] } } },
                "resources": { "requests": { "cpu": "100m", "memory": "256Mi" }, "limits": { "cpu": "1", "memory": "512Mi" } }
              }
            }
            """)),
    };

    /// <summary>values.yaml with the release's values over it, as Helm coalesces them (tables merge, null deletes).</summary>
    public static JsonObject EffectiveValues(HelmRelease release)
    {
        var defaults = (JsonObject)YamlToJson.ReadAll(File.ReadAllText(Path.Combine(HelmRenderer.ChartDirectory, "values.yaml"))).Single()!;
        return Coalesce((JsonObject)release.Values.DeepClone(), defaults);
    }

    private static JsonObject Coalesce(JsonObject user, JsonObject defaults)
    {
        foreach (var (key, value) in defaults)
        {
            if (!user.TryGetPropertyValue(key, out var mine))
            {
                user[key] = value?.DeepClone();
            }
            else if (mine is null)
            {
                user.Remove(key);
            }
            else if (mine is JsonObject mineTable && value is JsonObject defaultTable)
            {
                Coalesce(mineTable, defaultTable);
            }
        }
        return user;
    }

    private static JsonObject Values(string json) => JsonNode.Parse(json)!.AsObject();
}
