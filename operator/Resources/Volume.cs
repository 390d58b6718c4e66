using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Resources;

/// <summary>The <c>Volume</c> custom resource (feitian.io/v1alpha1): one RAF volume of a storage cluster.</summary>
public sealed class Volume : IKubernetesObject<V1ObjectMeta>, ISpec<VolumeSpec>, IStatus<VolumeStatus?>
{
    public const string Plural = "volumes";
    public const string KindName = "Volume";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = StorageCluster.ApiVersionName;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = KindName;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public VolumeSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public VolumeStatus? Status { get; set; }
}

public sealed class VolumeList : IKubernetesObject<V1ListMeta>, IItems<Volume>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = StorageCluster.ApiVersionName;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "VolumeList";

    [JsonPropertyName("metadata")]
    public V1ListMeta Metadata { get; set; } = new();

    [JsonPropertyName("items")]
    public IList<Volume> Items { get; set; } = [];
}

public sealed class VolumeSpec
{
    /// <summary>Name of the StorageCluster (same namespace) that holds the volume.</summary>
    [JsonPropertyName("cluster")]
    public string Cluster { get; set; } = "";

    [JsonPropertyName("size")]
    public string Size { get; set; } = "";

    [JsonPropertyName("replicas")]
    public int Replicas { get; set; } = 3;

    [JsonPropertyName("rackSpread")]
    public bool RackSpread { get; set; } = true;

    [JsonPropertyName("accessMode")]
    public string AccessMode { get; set; } = "ReadWriteOnce";

    [JsonPropertyName("sourceSnapshot")]
    public string? SourceSnapshot { get; set; }
}

public sealed class VolumeStatus
{
    [JsonPropertyName("state")]
    public string? State { get; set; }

    [JsonPropertyName("attachedNode")]
    public string? AttachedNode { get; set; }

    /// <summary>"healthy/wanted": the fewest good replicas of any chunk of the volume, over its replica count.</summary>
    [JsonPropertyName("replicaHealth")]
    public string? ReplicaHealth { get; set; }

    /// <summary>Size of the volume on the master, in bytes (spec.size rounded up to 4 KiB once created).</summary>
    [JsonPropertyName("sizeBytes")]
    public long? SizeBytes { get; set; }

    [JsonPropertyName("conditions")]
    public IList<V1Condition> Conditions { get; set; } = [];
}
