using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Tests.Schema;

namespace FeitianK8s.Operator.Tests;

/// <summary>helm is not available here: these check what can be checked without rendering.</summary>
public sealed partial class HelmChartTests
{
    private static readonly string Chart = Repo.Path("charts", "feitian");

    private static JsonObject Values() => (JsonObject)YamlToJson.ReadAll(File.ReadAllText(Path.Combine(Chart, "values.yaml"))).Single()!;

    private static bool HasPath(JsonObject root, string dotted) =>
        dotted.Split('.').Aggregate((JsonNode?)root, (node, key) => node is JsonObject o && o.ContainsKey(key) ? o[key] ?? new JsonObject() : null) is not null;

    [Fact]
    public void Chart_crds_are_identical_to_the_crds_folder()
    {
        var source = Directory.GetFiles(Repo.Path("crds"), "*.yaml").Select(Path.GetFileName).Order().ToList();
        var chart = Directory.GetFiles(Path.Combine(Chart, "crds"), "*.yaml").Select(Path.GetFileName).Order().ToList();
        Assert.Equal(source, chart);
        foreach (var file in source)
        {
            Assert.Equal(File.ReadAllText(Repo.Path("crds", file!)), File.ReadAllText(Path.Combine(Chart, "crds", file!)));
        }
    }

    [Fact]
    public void Chart_yaml_and_values_parse()
    {
        var chart = (JsonObject)YamlToJson.ReadAll(File.ReadAllText(Path.Combine(Chart, "Chart.yaml"))).Single()!;
        Assert.Equal("v2", chart["apiVersion"]!.GetValue<string>());
        Assert.Equal("feitian", chart["name"]!.GetValue<string>());
        Assert.NotNull(Values()["operator"]);
    }

    [Fact]
    public void Every_value_the_chart_readme_lists_exists_in_values_yaml_and_every_leaf_is_listed()
    {
        var readme = File.ReadAllText(Path.Combine(Chart, "README.md"));
        var listed = ReadmeKey().Matches(readme).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(listed);
        var values = Values();
        Assert.All(listed, key => Assert.True(HasPath(values, key), $"README lists {key}, values.yaml lacks it"));
        // Every top-level and second-level key is documented (directly or through a listed child/parent).
        foreach (var (top, node) in values)
        {
            var keys = node is JsonObject o ? o.Select(kv => $"{top}.{kv.Key}").ToList() : [top];
            Assert.All(keys, k => Assert.True(listed.Any(l => l == k || l.StartsWith(k + ".", StringComparison.Ordinal) || k.StartsWith(l + ".", StringComparison.Ordinal)),
                $"{k} is in values.yaml but not in the chart README"));
        }
    }

    [Fact]
    public void Every_value_a_template_uses_exists_in_values_yaml()
    {
        var values = Values();
        foreach (var file in Directory.GetFiles(Path.Combine(Chart, "templates")))
        {
            foreach (Match m in ValuesRef().Matches(File.ReadAllText(file)))
            {
                Assert.True(HasPath(values, m.Groups[1].Value), $"{Path.GetFileName(file)} uses .Values.{m.Groups[1].Value}, missing from values.yaml");
            }
        }
    }

    [Fact]
    public void Templates_have_balanced_actions_and_their_plain_yaml_parts_parse_into_named_objects()
    {
        var kinds = new List<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(Chart, "templates"), "*.yaml"))
        {
            var text = File.ReadAllText(file);
            Assert.Equal(Regex.Count(text, @"\{\{"), Regex.Count(text, @"\}\}"));
            // Drop lines that are only template actions; replace inline actions by a scalar.
            var plain = string.Join('\n', text.Split('\n')
                .Where(l => !ActionOnlyLine().IsMatch(l))
                .Select(l => InlineAction().Replace(l, "x")));
            foreach (var doc in YamlToJson.ReadAll(plain).OfType<JsonObject>())
            {
                Assert.NotNull(doc["apiVersion"]);
                Assert.NotNull(doc["metadata"]?["name"]);
                kinds.Add(doc["kind"]!.GetValue<string>());
            }
        }
        Assert.Superset(new HashSet<string> { "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding" }, kinds.ToHashSet());
    }

    [Fact]
    public void Operator_cluster_role_grants_every_resource_the_operator_touches()
    {
        var text = File.ReadAllText(Path.Combine(Chart, "templates", "rbac.yaml"));
        var plain = string.Join('\n', text.Split('\n').Where(l => !ActionOnlyLine().IsMatch(l)).Select(l => InlineAction().Replace(l, "x")));
        var role = YamlToJson.ReadAll(plain).OfType<JsonObject>().First(d => d["kind"]!.GetValue<string>() == "ClusterRole");
        var rules = role["rules"]!.AsArray().Select(r => (
            Groups: r!["apiGroups"]!.AsArray().Select(g => g!.GetValue<string>()).ToList(),
            Resources: r["resources"]!.AsArray().Select(x => x!.GetValue<string>()).ToList())).ToList();
        var used = new[]
        {
            ResourceKind.StatefulSet, ResourceKind.DaemonSet, ResourceKind.Deployment, ResourceKind.Service, ResourceKind.ServiceAccount,
            ResourceKind.Pod, ResourceKind.Node, ResourceKind.PodDisruptionBudget, ResourceKind.CsiDriver, ResourceKind.StorageClass,
            ResourceKind.SnapshotClass, ResourceKind.Crd, ResourceKind.StorageClusters, ResourceKind.Volumes, ResourceKind.ClusterRoleBinding,
            ResourceKind.Secret, ResourceKind.NetworkPolicy, ResourceKind.Issuer, ResourceKind.Certificate,
        };
        foreach (var kind in used)
        {
            Assert.True(rules.Any(r => r.Groups.Contains(kind.Group) && r.Resources.Contains(kind.Plural)), $"no rule for {kind.Group}/{kind.Plural}");
        }
        Assert.Contains(rules, r => r.Resources.Contains("storageclusters/status"));
        Assert.Contains(rules, r => r.Resources.Contains("events"));
    }

    [Fact]
    public void Operator_cluster_role_grants_exactly_the_verbs_the_volume_sync_uses()
    {
        var text = File.ReadAllText(Path.Combine(Chart, "templates", "rbac.yaml"));
        var plain = string.Join('\n', text.Split('\n').Where(l => !ActionOnlyLine().IsMatch(l)).Select(l => InlineAction().Replace(l, "x")));
        var role = YamlToJson.ReadAll(plain).OfType<JsonObject>().First(d => d["kind"]!.GetValue<string>() == "ClusterRole");
        List<string> Verbs(string group, string resource) => role["rules"]!.AsArray()
            .Where(r => r!["apiGroups"]!.AsArray().Any(g => g!.GetValue<string>() == group) && r["resources"]!.AsArray().Any(x => x!.GetValue<string>() == resource))
            .SelectMany(r => r!["verbs"]!.AsArray().Select(v => v!.GetValue<string>())).Order().ToList();
        // Mirrors are created, rewritten and deleted; user Volumes get finalizers and the adoption annotation.
        Assert.Equal(["create", "delete", "get", "list", "update", "watch"], Verbs("feitian.io", "volumes"));
        Assert.Equal(["get", "update"], Verbs("feitian.io", "volumes/status"));
        // Nothing the operator makes is owned by a Volume; mirrors block their StorageCluster's deletion (storageclusters/finalizers).
        Assert.Empty(Verbs("feitian.io", "volumes/finalizers"));
        Assert.Equal(["update"], Verbs("feitian.io", "storageclusters/finalizers"));
        Assert.Equal(["create"], Verbs("", "events"));
        // Certificates: Secrets are read by name, created and renewed in place; never listed, watched or deleted.
        Assert.Equal(["create", "get", "update"], Verbs("", "secrets"));
        Assert.Equal(["create", "get", "update"], Verbs("cert-manager.io", "certificates"));
        Assert.Equal(["create", "delete", "get", "list", "update"], Verbs("networking.k8s.io", "networkpolicies"));
    }

    [GeneratedRegex(@"^\|\s*`([A-Za-z0-9_.]+)`\s*\|", RegexOptions.Multiline)]
    private static partial Regex ReadmeKey();

    [GeneratedRegex(@"\.Values\.([A-Za-z0-9_.]+)")]
    private static partial Regex ValuesRef();

    [GeneratedRegex(@"^\s*\{\{-?.*-?\}\}\s*$")]
    private static partial Regex ActionOnlyLine();

    [GeneratedRegex(@"\{\{-?.*?-?\}\}")]
    private static partial Regex InlineAction();
}
