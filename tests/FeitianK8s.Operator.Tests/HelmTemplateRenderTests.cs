using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Tests.Helm;
using FeitianK8s.Operator.Tests.Schema;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Helm itself is not available on this machine (no binary, and nowhere to download one from).
/// These tests replay its template stage instead: tests/helm-render loads the chart as Helm's
/// loader does and renders it with Go's text/template and the same Sprig and YAML libraries Helm
/// is built with, printing what `helm template` prints. The renders are then checked for what
/// `helm install`, `helm lint` or the API server would refuse, and for whether the operator pod
/// would start: its command line, environment, ports, ServiceAccount and RBAC.
/// </summary>
public sealed partial class HelmTemplateRenderTests(ITestOutputHelper output)
{
    private static readonly HashSet<string> RbacKinds = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

    public static TheoryData<string> Scenarios => new(HelmScenarios.All.Keys);

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Every_rendered_object_is_one_the_api_server_accepts(string scenario)
    {
        var release = HelmScenarios.All[scenario];
        var chart = await HelmRenderer.RenderAsync(output, release);
        Assert.NotEmpty(chart.Documents);
        var crdSchemas = ChartCrdSchemas();
        foreach (var doc in chart.Documents)
        {
            var at = $"{doc.Source}: {doc.Kind}/{doc.Name}";
            Assert.StartsWith("feitian/templates/", doc.Source, StringComparison.Ordinal);
            Assert.False(string.IsNullOrEmpty(doc.Object["apiVersion"]?.GetValue<string>()), $"{at}: no apiVersion");
            Assert.False(doc.Kind.Length == 0, $"{doc.Source}: no kind");
            Assert.True(KubernetesNames.NameError(doc.Kind, doc.Name) is null, $"{at}: {KubernetesNames.NameError(doc.Kind, doc.Name)}");
            Assert.True(KubernetesNames.IsClusterScoped(doc.Kind) ? doc.Namespace is null : doc.Namespace is null || doc.Namespace == release.Namespace,
                $"{at}: namespace {doc.Namespace} (release namespace {release.Namespace})");
            Assert.Empty(KubernetesNames.LabelErrors(doc.Object["metadata"]?["labels"] as JsonObject).Select(e => $"{at}: {e}"));
            if (crdSchemas.TryGetValue($"{doc.Object["apiVersion"]}/{doc.Kind}", out var schema))
            {
                Assert.Empty(StructuralSchemaValidator.Validate(schema, doc.Object.DeepClone()).Select(e => $"{at}: {e}"));
            }
            else
            {
                Assert.DoesNotContain("feitian.io", doc.Object["apiVersion"]!.GetValue<string>(), StringComparison.Ordinal);
                // The client's strict model binding: unknown fields and wrong types fail, as kubectl's strict validation does.
                Assert.Single(k8s.KubernetesYaml.LoadAllFromString(doc.Text, null, strict: true));
            }
        }
        var duplicates = chart.Documents.GroupBy(d => (d.Kind, d.Namespace, d.Name)).Where(g => g.Count() > 1).Select(g => g.Key);
        Assert.Empty(duplicates);
    }

    [Fact]
    public async Task Csi_cluster_roles_are_named_per_release_and_the_operator_binds_exactly_those()
    {
        var clusterScoped = new List<HashSet<string>>();
        foreach (var release in new[] { new HelmRelease("feitian", "feitian-system", []), new HelmRelease("second", "other-ns", []) })
        {
            var chart = await HelmRenderer.RenderAsync(output, release);
            var container = chart.Single("Deployment").Object["spec"]!["template"]!["spec"]!["containers"]![0]!;
            var prefix = OperatorOptions.Parse(container["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList()).CsiClusterRolePrefix;
            var roles = chart.Documents.Where(d => d.Kind == "ClusterRole").Select(d => d.Name).ToList();
            Assert.Contains(Names.CsiControllerClusterRole(prefix), roles);
            Assert.Contains(Names.CsiNodeClusterRole(prefix), roles);
            var bind = chart.Documents.Where(d => d.Kind == "ClusterRole").SelectMany(d => d.Object["rules"]!.AsArray())
                .Single(r => r!["verbs"]!.AsArray().Any(v => v!.GetValue<string>() == "bind"))!;
            Assert.Equal([Names.CsiControllerClusterRole(prefix), Names.CsiNodeClusterRole(prefix)],
                bind["resourceNames"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal).ToList());
            clusterScoped.Add(chart.Documents.Where(d => KubernetesNames.IsClusterScoped(d.Kind)).Select(d => $"{d.Kind}/{d.Name}").ToHashSet());
        }
        // Two releases in one cluster: no cluster-scoped object of one has the name of the other's.
        Assert.Empty(clusterScoped[0].Intersect(clusterScoped[1]));
    }

    /// <summary>
    /// Leases only through namespaced Roles: no ClusterRole of the chart grants leases (the CSI
    /// ones included, which the operator binds cluster-wide); the CSI sidecars' Role lives in the
    /// release namespace, where the operator points their --leader-election-namespace (its own
    /// lease namespace) and may bind that Role, and only that one.
    /// </summary>
    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Leases_are_granted_only_by_namespaced_roles_and_the_operator_can_bind_the_csi_one(string scenario)
    {
        var release = HelmScenarios.All[scenario];
        var values = HelmScenarios.EffectiveValues(release);
        var chart = await HelmRenderer.RenderAsync(output, release);
        static bool GrantsLeases(RenderedDocument role) =>
            (role.Object["rules"]?.AsArray() ?? []).Any(r => r!["resources"]!.AsArray().Any(x => x!.GetValue<string>() == "leases"));
        Assert.DoesNotContain(chart.OfKind("ClusterRole"), GrantsLeases);
        if (!values["rbac"]!["create"]!.GetValue<bool>())
        {
            // No RBAC rendered at all: whoever grants it must follow the same rule.
            Assert.DoesNotContain(chart.Documents, d => RbacKinds.Contains(d.Kind));
        }
        else
        {
            AssertCsiLeaseRoleAndOperatorBind(chart, release);
        }
    }

    private static void AssertCsiLeaseRoleAndOperatorBind(RenderedChart chart, HelmRelease release)
    {
        static bool GrantsLeases(RenderedDocument role) =>
            (role.Object["rules"]?.AsArray() ?? []).Any(r => r!["resources"]!.AsArray().Any(x => x!.GetValue<string>() == "leases"));
        var container = chart.Single("Deployment").Object["spec"]!["template"]!["spec"]!["containers"]![0]!;
        var options = OperatorOptions.Parse(container["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList());
        Assert.Equal(release.Namespace, options.LeaseNamespace);
        var csiRole = Assert.Single(chart.OfKind("Role"), r => r.Name == Names.CsiLeaderElectionRole(options.CsiClusterRolePrefix));
        Assert.Equal(release.Namespace, csiRole.Namespace);
        Assert.True(GrantsLeases(csiRole));
        var leaseVerbs = csiRole.Object["rules"]!.AsArray().Single()!["verbs"]!.AsArray().Select(v => v!.GetValue<string>()).ToHashSet();
        // What the sidecars' leader election (client-go's Lease lock, as csi-lib-utils uses it) needs.
        Assert.Superset(new HashSet<string> { "get", "create", "update" }, leaseVerbs);
        // The operator may create RoleBindings there and bind exactly that Role.
        var operatorRules = chart.OfKind("Role").Where(r => r.Namespace == release.Namespace && r.Name != csiRole.Name)
            .SelectMany(r => r.Object["rules"]!.AsArray()).ToList();
        Assert.Contains(operatorRules, r => r!["resources"]!.AsArray().Any(x => x!.GetValue<string>() == "rolebindings")
            && r["verbs"]!.AsArray().Any(v => v!.GetValue<string>() == "create"));
        var bind = Assert.Single(operatorRules, r => r!["verbs"]!.AsArray().Any(v => v!.GetValue<string>() == "bind"));
        Assert.Equal([csiRole.Name], bind!["resourceNames"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public async Task A_bundled_storage_cluster_outside_the_watched_namespace_is_refused_at_render()
    {
        var values = JsonNode.Parse("""{ "storageCluster": { "create": true }, "operator": { "watchNamespace": "elsewhere" } }""")!.AsObject();
        var result = await HelmRenderer.RunAsync(output, new HelmRelease("feitian", "feitian-system", values));
        Assert.False(result.Succeeded);
        Assert.Contains("operator.watchNamespace is elsewhere: the operator would never see it", result.StandardError, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Operator_pod_would_start_with_its_command_line_service_account_and_rbac(string scenario)
    {
        var release = HelmScenarios.All[scenario];
        var values = HelmScenarios.EffectiveValues(release);
        var chart = await HelmRenderer.RenderAsync(output, release);
        var deployment = chart.Single("Deployment").Object;
        var pod = deployment["spec"]!["template"]!;
        var podLabels = pod["metadata"]!["labels"]!.AsObject();
        Assert.True(IsSubset(deployment["spec"]!["selector"]!["matchLabels"]!.AsObject(), podLabels), "the Deployment's selector must match its pod labels");
        var container = Assert.Single(pod["spec"]!["containers"]!.AsArray())!;

        var args = container["args"]!.AsArray();
        Assert.All(args, a => Assert.Equal(JsonValueKind.String, a!.GetValueKind()));
        var options = OperatorOptions.Parse(args.Select(a => a!.GetValue<string>()).ToList());
        var op = values["operator"]!;
        Assert.Equal(Int(op["httpPort"]), options.HttpPort);
        Assert.True(options.LeaderElect);
        Assert.Equal(release.Namespace, options.LeaseNamespace);
        Assert.Equal(op["watchNamespace"]!.GetValue<string>() is { Length: > 0 } watched ? watched : null, options.Namespace);
        Assert.Equal(Enum.Parse<LogLevel>(op["logLevel"]!.GetValue<string>(), ignoreCase: true), options.LogLevel);

        var env = (container["env"]?.AsArray() ?? []).ToDictionary(e => e!["name"]!.GetValue<string>(), e => e!["valueFrom"]?["fieldRef"]?["fieldPath"]?.GetValue<string>());
        Assert.Superset(OperatorEnvironmentVariables(), env.Keys.ToHashSet());
        Assert.Equal("metadata.name", env["POD_NAME"]);
        Assert.Equal("metadata.namespace", env["POD_NAMESPACE"]);

        var ports = container["ports"]!.AsArray().ToDictionary(p => p!["name"]!.GetValue<string>(), p => Int(p!["containerPort"]));
        Assert.Contains(options.HttpPort, ports.Values);
        foreach (var probe in new[] { "livenessProbe", "readinessProbe" })
        {
            var httpGet = container[probe]!["httpGet"]!;
            Assert.Equal("/healthz", httpGet["path"]!.GetValue<string>());
            Assert.Equal(options.HttpPort, PortNumber(httpGet["port"]!, ports));
        }
        Assert.Equal($"{op["image"]!["repository"]}:{op["image"]!["tag"]}", container["image"]!.GetValue<string>());
        Assert.Equal(OperatorImageUser(), Int(pod["spec"]!["securityContext"]!["runAsUser"]));

        var serviceAccount = pod["spec"]!["serviceAccountName"]!.GetValue<string>();
        var accountValues = values["serviceAccount"]!;
        if (accountValues["create"]!.GetValue<bool>())
        {
            Assert.Contains(chart.OfKind("ServiceAccount"), sa => sa.Name == serviceAccount && sa.Namespace == release.Namespace);
        }
        else
        {
            Assert.Equal(accountValues["name"]!.GetValue<string>() is { Length: > 0 } named ? named : "default", serviceAccount);
        }
        AssertBindingsGrantTo(chart, serviceAccount, release.Namespace);
        if (values["rbac"]!["create"]!.GetValue<bool>())
        {
            Assert.Contains(chart.OfKind("ClusterRoleBinding"), b => b.Object["subjects"]!.AsArray().Any(s => s!["name"]!.GetValue<string>() == serviceAccount));
            var operatorBinding = Assert.Single(chart.OfKind("RoleBinding"),
                b => b.Namespace == options.LeaseNamespace && b.Object["subjects"]!.AsArray().Any(s => s!["name"]!.GetValue<string>() == serviceAccount));
            var leaseRole = Assert.Single(chart.OfKind("Role"), r => r.Namespace == options.LeaseNamespace && r.Name == operatorBinding.Object["roleRef"]!["name"]!.GetValue<string>());
            Assert.Contains(leaseRole.Object["rules"]!.AsArray(), r => r!["resources"]!.AsArray().Any(x => x!.GetValue<string>() == "leases"));
        }

        foreach (var service in chart.OfKind("Service"))
        {
            Assert.True(IsSubset(service.Object["spec"]!["selector"]!.AsObject(), podLabels), $"Service {service.Name} selects no operator pod");
            Assert.All(service.Object["spec"]!["ports"]!.AsArray(), p => Assert.Equal(options.HttpPort, PortNumber(p!["targetPort"]!, ports)));
        }
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Optional_objects_and_pod_settings_follow_values_yaml(string scenario)
    {
        var release = HelmScenarios.All[scenario];
        var values = HelmScenarios.EffectiveValues(release);
        var chart = await HelmRenderer.RenderAsync(output, release);
        Assert.Equal(values["rbac"]!["create"]!.GetValue<bool>(), chart.Documents.Any(d => RbacKinds.Contains(d.Kind)));
        if (values["rbac"]!["create"]!.GetValue<bool>())
        {
            Assert.Superset(RbacKinds, chart.Documents.Select(d => d.Kind).ToHashSet());
        }
        Assert.Equal(values["serviceAccount"]!["create"]!.GetValue<bool>(), chart.OfKind("ServiceAccount").Any());
        var metrics = values["metrics"]!["service"]!;
        Assert.Equal(metrics["enabled"]!.GetValue<bool>(), chart.OfKind("Service").Any());
        if (metrics["enabled"]!.GetValue<bool>())
        {
            Assert.Equal(Int(metrics["port"]), Int(Assert.Single(chart.Single("Service").Object["spec"]!["ports"]!.AsArray())!["port"]));
        }

        var op = values["operator"]!;
        var deployment = chart.Single("Deployment").Object;
        Assert.Equal(Int(op["replicas"]), Int(deployment["spec"]!["replicas"]));
        var podSpec = deployment["spec"]!["template"]!["spec"]!.AsObject();
        AssertSameOrAbsentWhenEmpty(values["imagePullSecrets"], podSpec["imagePullSecrets"], "imagePullSecrets");
        foreach (var key in new[] { "nodeSelector", "tolerations", "affinity" })
        {
            AssertSameOrAbsentWhenEmpty(op[key], podSpec[key], key);
        }
        var container = podSpec["containers"]![0]!;
        Assert.True(JsonNode.DeepEquals(Reparse(op["resources"]), Reparse(container["resources"])), "container resources differ from operator.resources");
        Assert.Equal(op["image"]!["pullPolicy"]!.GetValue<string>(), container["imagePullPolicy"]!.GetValue<string>());

        var cluster = values["storageCluster"]!;
        Assert.Equal(cluster["create"]!.GetValue<bool>(), chart.OfKind("StorageCluster").Any());
        if (cluster["create"]!.GetValue<bool>())
        {
            var sc = chart.Single("StorageCluster");
            Assert.Equal(cluster["name"]!.GetValue<string>(), sc.Name);
            Assert.Equal(release.Namespace, sc.Namespace);
            foreach (var key in new[] { "masters", "chunkServers", "replication", "images" })
            {
                Assert.True(JsonNode.DeepEquals(Reparse(cluster[key]), Reparse(sc.Object["spec"]![key])), $"StorageCluster spec.{key} differs from storageCluster.{key}");
            }
            // An operator that watches one namespace must watch the one the chart puts its StorageCluster in.
            var watched = op["watchNamespace"]!.GetValue<string>();
            Assert.True(watched.Length == 0 || watched == sc.Namespace, $"operator.watchNamespace {watched} never sees the StorageCluster in {sc.Namespace}");
        }
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task Renders_the_same_when_missing_values_are_errors_as_with_helm_lint_strict(string scenario)
    {
        var release = HelmScenarios.All[scenario];
        var lenient = await HelmRenderer.RunAsync(output, release);
        var strict = await HelmRenderer.RunAsync(output, release with { Strict = true });
        Assert.True(strict.Succeeded, strict.StandardError);
        Assert.Equal(lenient.StandardOutput, strict.StandardOutput);
    }

    [Fact]
    public void Chart_yaml_and_templates_pass_helm_lint_rules()
    {
        var chartYaml = (JsonObject)YamlToJson.ReadAll(File.ReadAllText(Path.Combine(HelmRenderer.ChartDirectory, "Chart.yaml"))).Single()!;
        Assert.Equal("v2", chartYaml["apiVersion"]?.GetValue<string>());
        Assert.Equal(Path.GetFileName(HelmRenderer.ChartDirectory), chartYaml["name"]?.GetValue<string>());
        Assert.Matches(SemVer(), chartYaml["version"]?.GetValue<string>() ?? "");
        Assert.Equal(JsonValueKind.String, chartYaml["appVersion"]?.GetValueKind());
        Assert.NotEmpty(chartYaml["appVersion"]!.GetValue<string>());
        Assert.Equal("application", chartYaml["type"]?.GetValue<string>() ?? "application");
        // The chart version goes into the helm.sh/chart label, so it must be a valid label value.
        Assert.Empty(KubernetesNames.LabelErrors(new JsonObject { ["helm.sh/chart"] = $"feitian-{chartYaml["version"]}" }));
        foreach (var file in Directory.GetFiles(Path.Combine(HelmRenderer.ChartDirectory, "templates"), "*", SearchOption.AllDirectories))
        {
            Assert.Contains(Path.GetExtension(file), new[] { ".yaml", ".yml", ".tpl", ".txt" });
            Assert.DoesNotContain(".Release.Time", File.ReadAllText(file), StringComparison.Ordinal);
        }
        Assert.IsType<JsonObject>(YamlToJson.ReadAll(File.ReadAllText(Path.Combine(HelmRenderer.ChartDirectory, "values.yaml"))).Single());
    }

    private static void AssertBindingsGrantTo(RenderedChart chart, string serviceAccount, string ns)
    {
        foreach (var binding in chart.Documents.Where(d => d.Kind is "ClusterRoleBinding" or "RoleBinding"))
        {
            var subject = Assert.Single(binding.Object["subjects"]!.AsArray())!;
            Assert.Equal(("ServiceAccount", serviceAccount, ns), (subject["kind"]!.GetValue<string>(), subject["name"]!.GetValue<string>(), subject["namespace"]!.GetValue<string>()));
            var roleRef = binding.Object["roleRef"]!;
            var roleKind = roleRef["kind"]!.GetValue<string>();
            Assert.Contains(chart.OfKind(roleKind), r => r.Name == roleRef["name"]!.GetValue<string>() && r.Namespace == binding.Namespace);
        }
    }

    private static void AssertSameOrAbsentWhenEmpty(JsonNode? value, JsonNode? rendered, string key)
    {
        var empty = value is null || value is JsonObject { Count: 0 } || value is JsonArray { Count: 0 };
        Assert.True(empty ? rendered is null : JsonNode.DeepEquals(Reparse(value), Reparse(rendered)), $"pod spec {key}: {rendered?.ToJsonString()} for value {value?.ToJsonString()}");
    }

    private static int Int(JsonNode? node) => checked((int)node!.GetValue<long>());

    /// <summary>A node re-read from its JSON text, so numbers from JSON and from YAML compare equal.</summary>
    private static JsonNode? Reparse(JsonNode? node) => node is null ? null : JsonNode.Parse(node.ToJsonString());

    private static bool IsSubset(JsonObject subset, JsonObject of) =>
        subset.Count > 0 && subset.All(kv => of[kv.Key]?.ToJsonString() == kv.Value?.ToJsonString());

    private static int PortNumber(JsonNode port, Dictionary<string, int> named) =>
        port.GetValueKind() == JsonValueKind.String ? named.GetValueOrDefault(port.GetValue<string>(), -1) : Int(port);

    private static Dictionary<string, JsonObject> ChartCrdSchemas() =>
        Directory.GetFiles(Path.Combine(HelmRenderer.ChartDirectory, "crds"), "*.yaml")
            .SelectMany(f => YamlToJson.ReadAll(File.ReadAllText(f))).OfType<JsonObject>()
            .SelectMany(crd => crd["spec"]!["versions"]!.AsArray().Where(v => v!["served"]!.GetValue<bool>()).Select(v => KeyValuePair.Create(
                $"{crd["spec"]!["group"]}/{v!["name"]}/{crd["spec"]!["names"]!["kind"]}", (JsonObject)v["schema"]!["openAPIV3Schema"]!)))
            .ToDictionary();

    /// <summary>The environment variables the operator's command line reads (OperatorOptions.cs).</summary>
    private static HashSet<string> OperatorEnvironmentVariables() =>
        EnvironmentRead().Matches(File.ReadAllText(Repo.Path("operator", "OperatorOptions.cs"))).Select(m => m.Groups[1].Value).ToHashSet();

    /// <summary>The uid the operator image runs as (USER of deploy/operator.Dockerfile).</summary>
    private static int OperatorImageUser() =>
        int.Parse(DockerUser().Match(File.ReadAllText(Repo.Path("deploy", "operator.Dockerfile"))).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex(@"GetEnvironmentVariable\(""([A-Z_]+)""\)")]
    private static partial Regex EnvironmentRead();

    [GeneratedRegex(@"^USER (\d+)", RegexOptions.Multiline)]
    private static partial Regex DockerUser();

    // semver.org's SemVer 2.0.0 pattern.
    [GeneratedRegex(@"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")]
    private static partial Regex SemVer();
}
