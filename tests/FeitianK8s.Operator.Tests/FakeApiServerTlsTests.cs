using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Testing;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Certificates and NetworkPolicies through the operator's production path (OperatorHost) against a
/// FAKE Kubernetes API server on loopback: the Secrets it issues, what the pods mount, renewal in
/// place, cert-manager objects instead when cert-manager's CRD is there, and TLS turned off.
/// </summary>
public sealed class FakeApiServerTlsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Ns = "storage";
    private const string LeaseNs = "feitian-system";
    private const string Clusters = "feitian.io/v1alpha1/storageclusters";
    private const string Secrets = "v1/secrets";
    private const string Policies = "networking.k8s.io/v1/networkpolicies";
    private const string Certificates = "cert-manager.io/v1/certificates";
    private const string Issuers = "cert-manager.io/v1/issuers";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly ILoggerFactory _logs = XunitLoggerProvider.CreateFactory(output);
    private readonly TempDirectory _tlsDir = new("operator-tls");
    private FakeKubeApiServer _api = null!;
    private OperatorHost? _host;

    public async Task InitializeAsync()
    {
        _api = await FakeKubeApiServer.StartAsync(_logs);
        foreach (var node in TestClusters.ThreeRacks())
        {
            _api.Create("v1/nodes", null, ToJson(node));
        }
    }

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }
        await _api.DisposeAsync();
        _tlsDir.Dispose();
        _logs.Dispose();
    }

    private async Task<OperatorHost> StartOperatorAsync()
    {
        var options = new OperatorOptions
        {
            HttpPort = 0, Listen = "127.0.0.1", Identity = "operator-1", LeaseNamespace = LeaseNs, LeaderElect = false,
            MasterAddress = "127.0.0.1:1", TlsDirectory = _tlsDir.Path,
        };
        _host = new OperatorHost(options, new KubernetesClientConfiguration { Host = _api.Url }, _logs, null,
            new ReconcilerOptions { NotReadyRetry = TimeSpan.FromMilliseconds(500), RolloutRetry = TimeSpan.FromMilliseconds(300), CsiLeaseNamespace = LeaseNs },
            new ControllerOptions { Workers = 1, ResyncPeriod = TimeSpan.FromSeconds(1), RetryBaseDelay = TimeSpan.FromMilliseconds(50), RetryMaxDelay = TimeSpan.FromSeconds(1) });
        await _host.StartAsync();
        return _host;
    }

    private static JsonObject ToJson(object o) => (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(o))!;

    private void ApplyCluster(Action<JsonObject>? change = null)
    {
        var obj = ToJson(TestClusters.Minimal("prod", Ns));
        obj["metadata"] = new JsonObject { ["name"] = "prod" };
        obj.Remove("status");
        change?.Invoke(obj);
        _api.Create(Clusters, Ns, obj);
    }

    private static async Task<T> EventuallyAsync<T>(Func<T?> probe, string what) where T : class
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } value)
            {
                return value;
            }
            await Task.Delay(50);
        }
        throw new TimeoutException($"timed out waiting for {what}");
    }

    private static string Data(JsonObject secret, string key) =>
        Encoding.ASCII.GetString(Convert.FromBase64String(secret["data"]![key]!.GetValue<string>()));

    private static X509Certificate2 CertificateOf(JsonObject secret) =>
        X509Certificate2.CreateFromPem(Data(secret, "tls.crt"), Data(secret, "tls.key"));

    private static List<string> Args(JsonObject workload, string container = "") =>
        workload["spec"]!["template"]!["spec"]!["containers"]!.AsArray()
            .First(c => container.Length == 0 || c!["name"]!.GetValue<string>() == container)!["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();

    private static string? TlsSecretOf(JsonObject workload) =>
        workload["spec"]!["template"]!["spec"]!["volumes"]?.AsArray().FirstOrDefault(v => v!["name"]!.GetValue<string>() == "tls")?["secret"]?["secretName"]?.GetValue<string>();

    [Fact]
    public async Task FakeApiServer_reconcile_issues_a_CA_and_a_certificate_per_role_and_every_pod_mounts_its_own_with_tls_flags()
    {
        var host = await StartOperatorAsync();
        ApplyCluster();

        var secrets = new Dictionary<string, JsonObject>();
        foreach (var role in ComponentRoles.All)
        {
            secrets[role] = await EventuallyAsync(() => _api.Get(Secrets, Ns, $"prod-tls-{role}"), $"secret prod-tls-{role}");
        }
        var caSecret = _api.Get(Secrets, Ns, "prod-tls-ca")!;
        using var ca = CertificateAuthority.FromPem(Data(caSecret, "ca.crt"), Data(caSecret, "ca.key"));
        using var verifier = new TempDirectory("verify");
        foreach (var (role, secret) in secrets)
        {
            Assert.Equal("kubernetes.io/tls", secret["type"]!.GetValue<string>());
            Assert.Equal(Data(caSecret, "ca.crt"), Data(secret, "ca.crt"));
            using var certificate = CertificateOf(secret);
            Assert.Equal(role, ComponentRoles.Of(certificate));
            Assert.False(ca.IsDueForRenewal(certificate, DateTimeOffset.UtcNow), $"{role}: not chained to the CA or about to expire");
            Assert.Equal("prod", secret["metadata"]!["ownerReferences"]![0]!["name"]!.GetValue<string>());
        }
        // The masters' certificate also names their Service and pods.
        using (var master = CertificateOf(secrets[ComponentRoles.Master]))
        {
            Assert.True(master.MatchesHostname($"prod-master-1.prod-master.{Ns}.svc"));
            Assert.True(master.MatchesHostname($"prod-master.{Ns}.svc"));
        }

        var sts = await EventuallyAsync(() => _api.Get("apps/v1/statefulsets", Ns, "prod-master"), "statefulset");
        var masterArgs = Args(sts);
        Assert.Equal("/etc/feitian/tls/tls.crt", masterArgs[masterArgs.IndexOf("--tls-cert") + 1]);
        Assert.Equal("/etc/feitian/tls/ca.crt", masterArgs[masterArgs.IndexOf("--tls-ca") + 1]);
        Assert.StartsWith("https://", masterArgs[masterArgs.IndexOf("--advertise") + 1]);
        Assert.Equal("prod-tls-master", TlsSecretOf(sts));
        var chunk = await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-chunkserver-rack-a"), "chunk servers");
        Assert.Equal("prod-tls-chunkserver", TlsSecretOf(chunk));
        Assert.All(Args(chunk)[Args(chunk).IndexOf("--master") + 1].Split(','), m => Assert.StartsWith("https://", m));
        Assert.Contains("--tls-key", Args(chunk));
        var controller = await EventuallyAsync(() => _api.Get("apps/v1/deployments", Ns, "prod-csi-controller"), "csi controller");
        Assert.Equal("prod-tls-csi-controller", TlsSecretOf(controller));
        Assert.Contains("--tls-cert", Args(controller, "csi-driver"));
        var node = await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node"), "csi node");
        Assert.Equal("prod-tls-csi-node", TlsSecretOf(node));
        Assert.Contains("--tls-cert", Args(node, "csi-driver"));
        // The volume-host agent starts the engines, Pangu clients of the csi-node role.
        var volumeHost = await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-volume-host"), "volume host");
        Assert.Equal("prod-tls-csi-node", TlsSecretOf(volumeHost));
        Assert.Contains("--tls-key", Args(volumeHost));
        Assert.All(Args(volumeHost)[Args(volumeHost).IndexOf("--masters") + 1].Split(','), m => Assert.StartsWith("https://", m));
        // Mounted as a whole directory (a subPath mount would never see a renewal).
        Assert.All(new[] { sts, chunk, controller, node, volumeHost }, w => Assert.DoesNotContain("subPath", w.ToJsonString()));

        // The operator presents its own certificate to this cluster's masters.
        var cluster = KubernetesJson.Deserialize<StorageCluster>(_api.Get(Clusters, Ns, "prod")!.ToJsonString());
        var tls = await EventuallyAsync(() => host.Certificates.For(cluster), "operator certificate");
        Assert.Equal(ComponentRoles.Operator, tls.Role);
        using var operatorCert = CertificateOf(secrets[ComponentRoles.Operator]);
        Assert.Equal(operatorCert.SerialNumber, tls.Certificate.SerialNumber);
    }

    [Fact]
    public async Task FakeApiServer_a_certificate_close_to_expiry_is_renewed_in_place_and_a_fresh_one_is_kept()
    {
        // Secrets as an earlier reconcile made them 70 of 90 days ago: less than a third of their lifetime left.
        var cluster = TestClusters.Minimal("prod", Ns);
        var old = TlsSecretPlanner.Plan(cluster, null, new Dictionary<string, k8s.Models.V1Secret>(), DateTimeOffset.UtcNow.AddDays(-70));
        foreach (var planned in old)
        {
            var json = ToJson(planned.Secret);
            json["metadata"]!.AsObject().Remove("ownerReferences");
            _api.Create(Secrets, Ns, json);
        }
        // ...except the master's, issued just now by the same CA.
        var caSecret = _api.Get(Secrets, Ns, "prod-tls-ca")!;
        using (var ca = CertificateAuthority.FromPem(Data(caSecret, "ca.crt"), Data(caSecret, "ca.key")))
        using (var fresh = ca.Issue(ComponentRoles.Master, "feitian-master", [], [], TlsSecretPlanner.CertificateValidity))
        {
            _api.Update(Secrets, Ns, "prod-tls-master", s => s["data"] = ToJson(TlsSecretPlanner.RoleSecret(cluster, ComponentRoles.Master, fresh, Data(caSecret, "ca.crt")))["data"]!.DeepClone());
        }
        var before = _api.Get(Secrets, Ns, "prod-tls-chunkserver")!;
        using var oldChunk = CertificateOf(before);
        var masterBefore = Data(_api.Get(Secrets, Ns, "prod-tls-master")!, "tls.crt");

        await StartOperatorAsync();
        ApplyCluster();
        var renewed = await EventuallyAsync(() => _api.Get(Secrets, Ns, "prod-tls-chunkserver") is { } s && Data(s, "tls.crt") != Data(before, "tls.crt") ? s : null,
            "renewed chunk-server certificate");
        // Same object (uid), new data; the CA is kept, so every running peer still trusts it.
        Assert.Equal(before["metadata"]!["uid"]!.GetValue<string>(), renewed["metadata"]!["uid"]!.GetValue<string>());
        using var newChunk = CertificateOf(renewed);
        Assert.Equal(ComponentRoles.ChunkServer, ComponentRoles.Of(newChunk));
        Assert.True(newChunk.NotAfter > DateTime.Now.AddDays(80));
        Assert.True(newChunk.NotAfter > oldChunk.NotAfter);
        Assert.Equal(Data(caSecret, "ca.crt"), Data(_api.Get(Secrets, Ns, "prod-tls-ca")!, "ca.crt"));
        Assert.Equal(Data(caSecret, "ca.crt"), Data(renewed, "ca.crt"));
        await EventuallyAsync(() => ComponentRoles.All.Where(r => r != ComponentRoles.Master)
            .All(r => Data(_api.Get(Secrets, Ns, $"prod-tls-{r}")!, "tls.crt") != Data(old.Single(p => p.Secret.Metadata.Name == $"prod-tls-{r}").Secret.Data, "tls.crt")) ? "" : null,
            "every old certificate renewed");
        Assert.Equal(masterBefore, Data(_api.Get(Secrets, Ns, "prod-tls-master")!, "tls.crt"));
    }

    private static string Data(IDictionary<string, byte[]> data, string key) => Encoding.ASCII.GetString(data[key]);

    [Fact]
    public async Task FakeApiServer_with_cert_manager_installed_Issuers_and_Certificates_make_the_same_Secrets_and_the_operator_issues_none()
    {
        _api.Create("apiextensions.k8s.io/v1/customresourcedefinitions", null, new JsonObject
        {
            ["apiVersion"] = "apiextensions.k8s.io/v1", ["kind"] = "CustomResourceDefinition",
            ["metadata"] = new JsonObject { ["name"] = "certificates.cert-manager.io" },
        });
        await StartOperatorAsync();
        ApplyCluster();

        var sts = await EventuallyAsync(() => _api.Get("apps/v1/statefulsets", Ns, "prod-master"), "statefulset");
        Assert.Equal("prod-tls-master", TlsSecretOf(sts));
        Assert.NotNull(_api.Get(Issuers, Ns, "prod-selfsigned")!["spec"]!["selfSigned"]);
        Assert.Equal("prod-tls-ca", _api.Get(Issuers, Ns, "prod-ca")!["spec"]!["ca"]!["secretName"]!.GetValue<string>());
        var root = _api.Get(Certificates, Ns, "prod-tls-ca")!;
        Assert.True(root["spec"]!["isCA"]!.GetValue<bool>());
        Assert.Equal("prod-selfsigned", root["spec"]!["issuerRef"]!["name"]!.GetValue<string>());
        foreach (var role in ComponentRoles.All)
        {
            var certificate = _api.Get(Certificates, Ns, $"prod-tls-{role}")!;
            Assert.Equal($"prod-tls-{role}", certificate["spec"]!["secretName"]!.GetValue<string>());
            Assert.Equal([$"spiffe://feitian/role/{role}"], certificate["spec"]!["uris"]!.AsArray().Select(u => u!.GetValue<string>()));
            Assert.Equal("prod-ca", certificate["spec"]!["issuerRef"]!["name"]!.GetValue<string>());
            Assert.Contains("client auth", certificate["spec"]!["usages"]!.AsArray().Select(u => u!.GetValue<string>()));
            Assert.Equal("PKCS8", certificate["spec"]!["privateKey"]!["encoding"]!.GetValue<string>());
        }
        // cert-manager (not running here) would write the Secrets; the operator wrote none itself.
        Assert.Empty(_api.List(Secrets, Ns));
    }

    [Fact]
    public async Task FakeApiServer_network_policies_admit_only_the_clusters_pods_and_the_operator_to_grpc_and_raft_and_go_when_disabled()
    {
        await StartOperatorAsync();
        ApplyCluster();
        var masters = await EventuallyAsync(() => _api.Get(Policies, Ns, "prod-master"), "master network policy");
        var chunks = await EventuallyAsync(() => _api.Get(Policies, Ns, "prod-chunkserver"), "chunk-server network policy");
        Assert.Equal(["app.kubernetes.io/component=master", "feitian.io/cluster=prod"],
            masters["spec"]!["podSelector"]!["matchLabels"]!.AsObject().Select(kv => $"{kv.Key}={kv.Value}").Order(StringComparer.Ordinal));
        Assert.Equal("chunkserver", chunks["spec"]!["podSelector"]!["matchLabels"]!["app.kubernetes.io/component"]!.GetValue<string>());

        static List<int> Ports(JsonNode rule) => rule["ports"]!.AsArray().Select(p => p!["port"]!.GetValue<int>()).Order().ToList();
        var masterRules = masters["spec"]!["ingress"]!.AsArray();
        Assert.Equal([9000, 9002], Ports(masterRules[0]!));
        var from = masterRules[0]!["from"]!.AsArray();
        Assert.Equal("prod", from[0]!["podSelector"]!["matchLabels"]!["feitian.io/cluster"]!.GetValue<string>());
        Assert.Equal(LeaseNs, from[1]!["namespaceSelector"]!["matchLabels"]!["kubernetes.io/metadata.name"]!.GetValue<string>());
        Assert.Equal("operator", from[1]!["podSelector"]!["matchLabels"]!["app.kubernetes.io/component"]!.GetValue<string>());
        // The HTTP port (console, /metrics, /healthz) is open to anyone: no "from".
        Assert.Equal([9001], Ports(masterRules[1]!));
        Assert.Null(masterRules[1]!["from"]);
        var chunkRules = chunks["spec"]!["ingress"]!.AsArray();
        Assert.Equal([9100], Ports(chunkRules[0]!));
        Assert.Equal([9101], Ports(chunkRules[1]!));
        Assert.Null(chunkRules[1]!["from"]);
        // Every pod the policies must admit carries the labels they select.
        await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node"), "workloads");
        foreach (var (kind, name) in new[] { ("statefulsets", "prod-master"), ("daemonsets", "prod-chunkserver-rack-a"), ("deployments", "prod-csi-controller"), ("daemonsets", "prod-csi-node"), ("daemonsets", "prod-volume-host") })
        {
            var labels = _api.Get($"apps/v1/{kind}", Ns, name)!["spec"]!["template"]!["metadata"]!["labels"]!;
            Assert.Equal("prod", labels["feitian.io/cluster"]!.GetValue<string>());
            Assert.Equal("feitian-operator", labels["app.kubernetes.io/managed-by"]!.GetValue<string>());
        }

        _api.Update(Clusters, Ns, "prod", c => c["spec"]!["networkPolicies"] = new JsonObject { ["enabled"] = false });
        await EventuallyAsync(() => _api.List(Policies, Ns).Count == 0 ? "" : null, "network policies removed");
    }

    [Fact]
    public async Task FakeApiServer_a_CA_Secret_without_its_key_is_reported_and_left_as_it_is()
    {
        _api.Create(Secrets, Ns, new JsonObject
        {
            ["apiVersion"] = "v1", ["kind"] = "Secret", ["type"] = "Opaque",
            ["metadata"] = new JsonObject { ["name"] = "prod-tls-ca" },
            ["data"] = new JsonObject { ["ca.crt"] = Convert.ToBase64String(Encoding.ASCII.GetBytes("not a certificate")) },
        });
        var before = _api.Get(Secrets, Ns, "prod-tls-ca")!.ToJsonString();
        await StartOperatorAsync();
        ApplyCluster();
        var warning = await EventuallyAsync(() => _api.List("v1/events", Ns).FirstOrDefault(e => e["reason"]!.GetValue<string>() == "TlsCaInvalid"), "TlsCaInvalid event");
        Assert.Contains("prod-tls-ca has no ca.crt and ca.key", warning["message"]!.GetValue<string>());
        // The rest of the cluster is still made; its pods wait for certificates that only a usable CA gives.
        await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node"), "workloads");
        Assert.Equal(before, _api.Get(Secrets, Ns, "prod-tls-ca")!.ToJsonString());
        Assert.Null(_api.Get(Secrets, Ns, "prod-tls-master"));
    }

    [Fact]
    public async Task FakeApiServer_tls_disabled_renders_no_flags_no_mounts_and_issues_no_Secret()
    {
        await StartOperatorAsync();
        ApplyCluster(c => c["spec"]!["tls"] = new JsonObject { ["enabled"] = false });
        var sts = await EventuallyAsync(() => _api.Get("apps/v1/statefulsets", Ns, "prod-master"), "statefulset");
        var node = await EventuallyAsync(() => _api.Get("apps/v1/daemonsets", Ns, "prod-csi-node"), "csi node");
        var chunk = _api.Get("apps/v1/daemonsets", Ns, "prod-chunkserver-rack-a")!;
        var controller = _api.Get("apps/v1/deployments", Ns, "prod-csi-controller")!;
        foreach (var workload in new[] { sts, node, chunk, controller })
        {
            Assert.DoesNotContain("--tls-", workload.ToJsonString());
            Assert.Null(TlsSecretOf(workload));
        }
        Assert.StartsWith("http://", Args(sts)[Args(sts).IndexOf("--advertise") + 1]);
        Assert.Empty(_api.List(Secrets, Ns));
        Assert.Empty(_api.List(Certificates, Ns));
    }
}
