using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Resources;

/// <summary>The <c>StorageCluster</c> custom resource (feitian.io/v1alpha1): one Feitian storage cluster.</summary>
public sealed class StorageCluster : IKubernetesObject<V1ObjectMeta>, ISpec<StorageClusterSpec>, IStatus<StorageClusterStatus?>
{
    public const string Group = "feitian.io";
    public const string Version = "v1alpha1";
    public const string Plural = "storageclusters";
    public const string KindName = "StorageCluster";
    public const string ApiVersionName = Group + "/" + Version;

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = ApiVersionName;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = KindName;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public StorageClusterSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public StorageClusterStatus? Status { get; set; }
}

public sealed class StorageClusterList : IKubernetesObject<V1ListMeta>, IItems<StorageCluster>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = StorageCluster.ApiVersionName;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "StorageClusterList";

    [JsonPropertyName("metadata")]
    public V1ListMeta Metadata { get; set; } = new();

    [JsonPropertyName("items")]
    public IList<StorageCluster> Items { get; set; } = [];
}

public sealed class StorageClusterSpec
{
    [JsonPropertyName("masters")]
    public MastersSpec Masters { get; set; } = new();

    [JsonPropertyName("chunkServers")]
    public ChunkServersSpec ChunkServers { get; set; } = new();

    [JsonPropertyName("replication")]
    public ReplicationSpec Replication { get; set; } = new();

    [JsonPropertyName("rebuild")]
    public RebuildSpec Rebuild { get; set; } = new();

    [JsonPropertyName("snapshotTarget")]
    public SnapshotTargetSpec? SnapshotTarget { get; set; }

    [JsonPropertyName("nodeFailover")]
    public NodeFailoverSpec NodeFailover { get; set; } = new();

    [JsonPropertyName("storageClass")]
    public StorageClassSpec StorageClass { get; set; } = new();

    [JsonPropertyName("tls")]
    public TlsSpec Tls { get; set; } = new();

    [JsonPropertyName("networkPolicies")]
    public NetworkPoliciesSpec NetworkPolicies { get; set; } = new();

    [JsonPropertyName("images")]
    public ImagesSpec Images { get; set; } = new();

    [JsonPropertyName("resources")]
    public ComponentResourcesSpec Resources { get; set; } = new();
}

public sealed class MastersSpec
{
    /// <summary>Master replicas; odd so that a Raft majority survives a minority failure.</summary>
    [JsonPropertyName("replicas")]
    public int Replicas { get; set; } = 3;

    /// <summary>Size of each master's metadata volume (a PersistentVolumeClaim), e.g. "10Gi".</summary>
    [JsonPropertyName("storage")]
    public string Storage { get; set; } = "10Gi";

    [JsonPropertyName("storageClassName")]
    public string? StorageClassName { get; set; }

    [JsonPropertyName("port")]
    public int Port { get; set; } = 9000;

    [JsonPropertyName("httpPort")]
    public int HttpPort { get; set; } = 9001;

    /// <summary>Port of the Raft transport between masters (TCP).</summary>
    [JsonPropertyName("raftPort")]
    public int RaftPort { get; set; } = 9002;
}

public sealed class ChunkServersSpec
{
    [JsonPropertyName("nodeSelector")]
    public IDictionary<string, string> NodeSelector { get; set; } = new Dictionary<string, string>();

    [JsonPropertyName("tolerations")]
    public IList<V1Toleration> Tolerations { get; set; } = [];

    [JsonPropertyName("rackLabel")]
    public string RackLabel { get; set; } = "topology.kubernetes.io/zone";

    /// <summary>Host paths of the data directories on every storage node.</summary>
    [JsonPropertyName("dataDirs")]
    public IList<string> DataDirs { get; set; } = ["/var/lib/feitian/data"];

    [JsonPropertyName("port")]
    public int Port { get; set; } = 9100;

    [JsonPropertyName("httpPort")]
    public int HttpPort { get; set; } = 9101;
}

public sealed class ReplicationSpec
{
    [JsonPropertyName("factor")]
    public int Factor { get; set; } = 3;

    [JsonPropertyName("minRacks")]
    public int MinRacks { get; set; } = 3;
}

public sealed class RebuildSpec
{
    /// <summary>Re-replication bandwidth budget per node, e.g. "100Mi" (bytes per second).</summary>
    [JsonPropertyName("bandwidthPerNode")]
    public string BandwidthPerNode { get; set; } = "100Mi";

    [JsonPropertyName("concurrentPerNode")]
    public int ConcurrentPerNode { get; set; } = 2;

    /// <summary>Seconds without a heartbeat before the master declares a chunk server dead (master --dead-after).</summary>
    [JsonPropertyName("deadAfterSeconds")]
    public int DeadAfterSeconds { get; set; } = 60;

    /// <summary>Re-replication copies running at once, cluster-wide (master --max-rebuilds).</summary>
    [JsonPropertyName("maxRebuilds")]
    public int MaxRebuilds { get; set; } = 12;

    /// <summary>Background scrub rate per node, e.g. "4Mi" bytes per second; "0" = off (chunk server --scrub-bandwidth).</summary>
    [JsonPropertyName("scrubBandwidthPerNode")]
    public string ScrubBandwidthPerNode { get; set; } = "4Mi";
}

/// <summary>Failover on node loss: node leases, the out-of-service taint, takeover of a lost node's volumes.</summary>
public sealed class NodeFailoverSpec
{
    /// <summary>False: node plugins keep no node lease (their volumes are never taken over) and the operator never taints this cluster's nodes.</summary>
    [JsonPropertyName("enabled")]
    public bool Enabled { get; set; } = true;

    /// <summary>Seconds a node's lease lasts without a renewal (CSI node plugin --node-lease-seconds).</summary>
    [JsonPropertyName("nodeLeaseSeconds")]
    public int NodeLeaseSeconds { get; set; } = 15;

    /// <summary>What the node plugins get as --node-lease-seconds (0 when failover is off).</summary>
    public int EffectiveLeaseSeconds() => Enabled ? NodeLeaseSeconds : 0;
}

/// <summary>Mutual TLS between the cluster's components (certificates in Secrets NAME-tls-ROLE).</summary>
public sealed class TlsSpec
{
    /// <summary>False: no certificates, no --tls-* flags; every component accepts any caller (plain gRPC).</summary>
    [JsonPropertyName("enabled")]
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Who issues the certificates: "auto" (cert-manager when its Certificate CRD is installed, else the
    /// operator), "operator", or "cert-manager" (waits for cert-manager when it is missing).
    /// </summary>
    [JsonPropertyName("issuer")]
    public string Issuer { get; set; } = "auto";
}

/// <summary>NetworkPolicies admitting only the cluster's own components to the masters' and chunk servers' gRPC and Raft ports.</summary>
public sealed class NetworkPoliciesSpec
{
    [JsonPropertyName("enabled")]
    public bool Enabled { get; set; } = true;
}

public sealed class SnapshotTargetSpec
{
    [JsonPropertyName("endpoint")]
    public string Endpoint { get; set; } = "";

    [JsonPropertyName("bucket")]
    public string Bucket { get; set; } = "";

    [JsonPropertyName("region")]
    public string? Region { get; set; }

    /// <summary>Secret in the cluster's namespace with keys accessKeyId and secretAccessKey.</summary>
    [JsonPropertyName("credentialsSecret")]
    public string? CredentialsSecret { get; set; }
}

public sealed class StorageClassSpec
{
    [JsonPropertyName("name")]
    public string Name { get; set; } = "feitian";

    [JsonPropertyName("isDefault")]
    public bool IsDefault { get; set; } = true;

    [JsonPropertyName("fsType")]
    public string FsType { get; set; } = "ext4";
}

public sealed class ImagesSpec
{
    [JsonPropertyName("master")]
    public string Master { get; set; } = "ghcr.io/feitian-k8s/master:0.1.0";

    [JsonPropertyName("chunkServer")]
    public string ChunkServer { get; set; } = "ghcr.io/feitian-k8s/chunkserver:0.1.0";

    [JsonPropertyName("csiDriver")]
    public string CsiDriver { get; set; } = "ghcr.io/feitian-k8s/csi-driver:0.1.0";

    [JsonPropertyName("csiProvisioner")]
    public string CsiProvisioner { get; set; } = "registry.k8s.io/sig-storage/csi-provisioner:v5.1.0";

    [JsonPropertyName("csiAttacher")]
    public string CsiAttacher { get; set; } = "registry.k8s.io/sig-storage/csi-attacher:v4.7.0";

    [JsonPropertyName("csiResizer")]
    public string CsiResizer { get; set; } = "registry.k8s.io/sig-storage/csi-resizer:v1.12.0";

    [JsonPropertyName("csiSnapshotter")]
    public string CsiSnapshotter { get; set; } = "registry.k8s.io/sig-storage/csi-snapshotter:v8.1.0";

    [JsonPropertyName("nodeDriverRegistrar")]
    public string NodeDriverRegistrar { get; set; } = "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.12.0";

    [JsonPropertyName("livenessProbe")]
    public string LivenessProbe { get; set; } = "registry.k8s.io/sig-storage/livenessprobe:v2.14.0";

    [JsonPropertyName("pullPolicy")]
    public string PullPolicy { get; set; } = "IfNotPresent";
}

public sealed class ComponentResourcesSpec
{
    [JsonPropertyName("master")]
    public V1ResourceRequirements? Master { get; set; }

    [JsonPropertyName("chunkServer")]
    public V1ResourceRequirements? ChunkServer { get; set; }

    [JsonPropertyName("csiController")]
    public V1ResourceRequirements? CsiController { get; set; }

    [JsonPropertyName("csiNode")]
    public V1ResourceRequirements? CsiNode { get; set; }
}

public sealed class StorageClusterStatus
{
    [JsonPropertyName("phase")]
    public string? Phase { get; set; }

    [JsonPropertyName("observedGeneration")]
    public long? ObservedGeneration { get; set; }

    [JsonPropertyName("conditions")]
    public IList<V1Condition> Conditions { get; set; } = [];

    [JsonPropertyName("masters")]
    public MastersStatus Masters { get; set; } = new();

    [JsonPropertyName("chunkServers")]
    public ChunkServersStatus ChunkServers { get; set; } = new();

    [JsonPropertyName("capacity")]
    public CapacityStatus? Capacity { get; set; }

    [JsonPropertyName("degradedChunks")]
    public long? DegradedChunks { get; set; }

    /// <summary>Chunks with fewer good replicas than wanted (being rebuilt).</summary>
    [JsonPropertyName("underReplicatedChunks")]
    public long? UnderReplicatedChunks { get; set; }

    [JsonPropertyName("rebuildBytesRemaining")]
    public long? RebuildBytesRemaining { get; set; }

    /// <summary>Chunk servers the master declared dead (no heartbeat for spec.rebuild.deadAfterSeconds), sorted.</summary>
    [JsonPropertyName("deadChunkServers")]
    public List<string>? DeadChunkServers { get; set; }
}

public sealed class MastersStatus
{
    [JsonPropertyName("desired")]
    public int Desired { get; set; }

    [JsonPropertyName("ready")]
    public int Ready { get; set; }

    [JsonPropertyName("leader")]
    public string? Leader { get; set; }

    /// <summary>"ready/desired", for the printer column.</summary>
    [JsonPropertyName("summary")]
    public string? Summary { get; set; }
}

public sealed class ChunkServersStatus
{
    [JsonPropertyName("desired")]
    public int Desired { get; set; }

    [JsonPropertyName("ready")]
    public int Ready { get; set; }

    [JsonPropertyName("summary")]
    public string? Summary { get; set; }

    [JsonPropertyName("racks")]
    public IList<RackStatus> Racks { get; set; } = [];
}

public sealed class RackStatus
{
    [JsonPropertyName("rack")]
    public string Rack { get; set; } = "";

    [JsonPropertyName("desired")]
    public int Desired { get; set; }

    [JsonPropertyName("ready")]
    public int Ready { get; set; }
}

public sealed class CapacityStatus
{
    [JsonPropertyName("totalBytes")]
    public long TotalBytes { get; set; }

    [JsonPropertyName("usedBytes")]
    public long UsedBytes { get; set; }

    /// <summary>Human-readable total, for the printer column.</summary>
    [JsonPropertyName("total")]
    public string? Total { get; set; }
}
