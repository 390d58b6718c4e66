using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

/// <summary>StorageClusters and nodes as tests need them.</summary>
public static class TestClusters
{
    /// <summary>A StorageCluster as the API server would return it for a minimal manifest (defaults applied by the models).</summary>
    public static StorageCluster Minimal(string name = "prod", string ns = "storage") =>
        KubernetesJson.Deserialize<StorageCluster>($$"""
            {"apiVersion":"feitian.io/v1alpha1","kind":"StorageCluster",
             "metadata":{"name":"{{name}}","namespace":"{{ns}}","uid":"uid-{{name}}","generation":1 },
             "spec":{"chunkServers":{"nodeSelector":{"feitian.io/storage":"true"} } } }
            """);

    public static V1Node Node(string name, string? rack, bool storage = true)
    {
        var labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = name };
        if (rack is not null)
        {
            labels["topology.kubernetes.io/zone"] = rack;
        }
        if (storage)
        {
            labels["feitian.io/storage"] = "true";
        }
        return new V1Node { ApiVersion = "v1", Kind = "Node", Metadata = new V1ObjectMeta { Name = name, Labels = labels } };
    }

    /// <summary>Six storage nodes on three racks, plus one worker that stores nothing.</summary>
    public static List<V1Node> ThreeRacks() =>
    [
        Node("node-a1", "rack-a"), Node("node-a2", "rack-a"),
        Node("node-b1", "rack-b"), Node("node-b2", "rack-b"),
        Node("node-c1", "rack-c"), Node("node-c2", "rack-c"),
        Node("worker-1", "rack-a", storage: false),
    ];
}
