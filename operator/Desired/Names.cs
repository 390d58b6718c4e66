using System.Security.Cryptography;
using System.Text;
using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Desired;

/// <summary>Names and labels of everything the operator creates for a StorageCluster.</summary>
public static class Names
{
    public const string CsiDriverName = "feitian.csi.k8s.io";
    public const string Finalizer = "feitian.io/storagecluster-protection";
    public const string SpecHashAnnotation = "feitian.io/spec-hash";
    public const string TemplateHashAnnotation = "feitian.io/template-hash";
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public const string ManagedByValue = "feitian-operator";
    public const string ComponentLabel = "app.kubernetes.io/component";
    public const string ClusterLabel = "feitian.io/cluster";
    /// <summary>On cluster-scoped objects (which cannot have a namespaced owner): "namespace.name" of the owning cluster.</summary>
    public const string OwnerLabel = "feitian.io/owner";
    public const string RackLabel = "feitian.io/rack";
    /// <summary>Marks the pods of the all-nodes node plugin DaemonSet (keeps its selector apart from the old per-rack ones).</summary>
    public const string NodePluginSetLabel = "feitian.io/node-plugin";
    public const string NodePluginSetValue = "all-nodes";

    public static string Master(StorageCluster c) => $"{c.Metadata.Name}-master";
    public static string MasterMetrics(StorageCluster c) => $"{c.Metadata.Name}-master-metrics";
    public static string ChunkServer(StorageCluster c, string rack) => $"{c.Metadata.Name}-chunkserver-{DnsLabel(rack)}";
    public static string ChunkServerMetrics(StorageCluster c) => $"{c.Metadata.Name}-chunkserver-metrics";
    /// <summary>The chunk servers' NetworkPolicy (the masters' is named like their StatefulSet).</summary>
    public static string ChunkServerPolicy(StorageCluster c) => $"{c.Metadata.Name}-chunkserver";
    public static string CsiController(StorageCluster c) => $"{c.Metadata.Name}-csi-controller";
    /// <summary>The node plugin DaemonSet (one for all nodes; earlier versions had CLUSTER-csi-node-RACK and CLUSTER-csi-node-unracked).</summary>
    public static string CsiNode(StorageCluster c) => $"{c.Metadata.Name}-csi-node";
    /// <summary>The per-node volume-host DaemonSet (the agent that runs the staged volumes' engines).</summary>
    public static string VolumeHost(StorageCluster c) => $"{c.Metadata.Name}-volume-host";
    public static string CsiNodeMetrics(StorageCluster c) => $"{c.Metadata.Name}-csi-node-metrics";
    /// <summary>The kubernetes.io/tls Secret of a component role (tls.crt, tls.key, ca.crt), mounted at <see cref="TlsMount.MountPath"/>.</summary>
    public static string TlsSecret(StorageCluster c, string role) => $"{c.Metadata.Name}-tls-{role}";
    /// <summary>The cluster CA: ca.crt and ca.key when the operator issues; tls.crt, tls.key and ca.crt when cert-manager does.</summary>
    public static string TlsCaSecret(StorageCluster c) => $"{c.Metadata.Name}-tls-ca";
    public static string SelfSignedIssuer(StorageCluster c) => $"{c.Metadata.Name}-selfsigned";
    public static string CaIssuer(StorageCluster c) => $"{c.Metadata.Name}-ca";
    /// <summary>On the TLS Secrets and Certificates: the role the certificate names.</summary>
    public const string TlsRoleLabel = "feitian.io/tls-role";
    public static string ServiceAccount(StorageCluster c) => $"{c.Metadata.Name}-csi";
    public static string NodeServiceAccount(StorageCluster c) => $"{c.Metadata.Name}-csi-node";

    /// <summary>
    /// Prefix of the ClusterRoles the Helm chart installs for the CSI pods (PREFIX-controller,
    /// PREFIX-node); the operator only binds them. The chart passes its own, so two releases do not clash.
    /// </summary>
    public const string DefaultCsiClusterRolePrefix = "feitian-csi";

    public static string CsiControllerClusterRole(string prefix) => $"{prefix}-controller";

    public static string CsiNodeClusterRole(string prefix) => $"{prefix}-node";

    /// <summary>The namespaced Role (in the operator's lease namespace) that allows the controller sidecars their Leases.</summary>
    public static string CsiLeaderElectionRole(string prefix) => $"{prefix}-leader-election";

    public static string RoleBinding(StorageCluster c, string role) => $"{role}-{c.Metadata.NamespaceProperty}-{c.Metadata.Name}";

    /// <summary>Stable DNS name of master pod i (from 0) behind the headless Service.</summary>
    public static string MasterHost(StorageCluster c, int i) => $"{Master(c)}-{i}.{Master(c)}.{c.Metadata.NamespaceProperty}.svc";

    /// <summary>gRPC address (host:port) of every master, as the chunk servers, the CSI driver and the operator dial them.</summary>
    public static IReadOnlyList<string> MasterAddresses(StorageCluster c) =>
        Enumerable.Range(0, Math.Max(1, c.Spec.Masters.Replicas)).Select(i => $"{MasterHost(c, i)}:{c.Spec.Masters.Port}").ToList();

    /// <summary>All masters' gRPC addresses, comma-separated (the form of --masters and --master-address).</summary>
    public static string MasterAddress(StorageCluster c) => string.Join(",", MasterAddresses(c));

    /// <summary>Raft endpoint (host:port) of every master: the --peers of the Raft group.</summary>
    public static IReadOnlyList<string> MasterRaftPeers(StorageCluster c) =>
        Enumerable.Range(0, Math.Max(1, c.Spec.Masters.Replicas)).Select(i => $"{MasterHost(c, i)}:{c.Spec.Masters.RaftPort}").ToList();

    public static string? Value(IDictionary<string, string>? map, string key) =>
        map is not null && map.TryGetValue(key, out var v) ? v : null;

    public static string OwnerValue(StorageCluster c) => $"{c.Metadata.NamespaceProperty}.{c.Metadata.Name}";

    public static Dictionary<string, string> Labels(StorageCluster c, string component) => new()
    {
        ["app.kubernetes.io/name"] = "feitian",
        ["app.kubernetes.io/instance"] = c.Metadata.Name,
        [ManagedByLabel] = ManagedByValue,
        [ComponentLabel] = component,
        [ClusterLabel] = c.Metadata.Name,
    };

    public static Dictionary<string, string> Selector(StorageCluster c, string component) => new()
    {
        [ClusterLabel] = c.Metadata.Name,
        [ComponentLabel] = component,
    };

    /// <summary>
    /// A rack value made into a DNS label fragment: lowercase alphanumerics and '-', at most 30 chars;
    /// when anything had to change, a short hash of the original keeps distinct racks distinct.
    /// </summary>
    public static string DnsLabel(string value)
    {
        var sb = new StringBuilder();
        foreach (var ch in value.ToLowerInvariant())
        {
            sb.Append(ch is >= 'a' and <= 'z' or >= '0' and <= '9' ? ch : '-');
        }
        var cleaned = sb.ToString().Trim('-');
        if (cleaned == value && cleaned.Length <= 30 && cleaned.Length > 0)
        {
            return cleaned;
        }
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(value)))[..6].ToLowerInvariant();
        if (cleaned.Length > 23)
        {
            cleaned = cleaned[..23].TrimEnd('-');
        }
        return cleaned.Length == 0 ? hash : $"{cleaned}-{hash}";
    }
}
