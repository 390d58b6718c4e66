using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>The racks found among the storage nodes (nodes matching the chunk-server node selector).</summary>
public sealed record RackGroups(IReadOnlyDictionary<string, IReadOnlyList<string>> NodesByRack, IReadOnlyList<string> NodesWithoutRack)
{
    public IEnumerable<string> Racks => NodesByRack.Keys;
}

public static class RackGrouping
{
    public static bool Matches(V1Node node, IDictionary<string, string> selector) =>
        selector.All(kv => node.Metadata.Labels is { } labels && labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    /// <summary>Groups the selected nodes by their rack label value, racks and node names sorted (stable output).</summary>
    public static RackGroups Group(IEnumerable<V1Node> nodes, IDictionary<string, string> selector, string rackLabel)
    {
        var byRack = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        var without = new List<string>();
        foreach (var node in nodes.Where(n => Matches(n, selector)).OrderBy(n => n.Metadata.Name, StringComparer.Ordinal))
        {
            if (node.Metadata.Labels is { } labels && labels.TryGetValue(rackLabel, out var rack) && !string.IsNullOrEmpty(rack))
            {
                if (!byRack.TryGetValue(rack, out var list))
                {
                    byRack[rack] = list = [];
                }
                list.Add(node.Metadata.Name);
            }
            else
            {
                without.Add(node.Metadata.Name);
            }
        }
        return new RackGroups(byRack.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<string>)kv.Value, StringComparer.Ordinal), without);
    }
}
