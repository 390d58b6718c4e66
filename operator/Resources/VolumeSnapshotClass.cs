using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Resources;

/// <summary>snapshot.storage.k8s.io/v1 VolumeSnapshotClass (from the external-snapshotter CRDs, not in k8s.Models).</summary>
public sealed class VolumeSnapshotClass : IKubernetesObject<V1ObjectMeta>
{
    public const string Group = "snapshot.storage.k8s.io";
    public const string Version = "v1";
    public const string Plural = "volumesnapshotclasses";
    public const string CrdName = Plural + "." + Group;

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = Group + "/" + Version;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "VolumeSnapshotClass";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("driver")]
    public string Driver { get; set; } = "";

    [JsonPropertyName("deletionPolicy")]
    public string DeletionPolicy { get; set; } = "Delete";

    [JsonPropertyName("parameters")]
    public IDictionary<string, string>? Parameters { get; set; }
}

public sealed class SnapshotClassList : IKubernetesObject<V1ListMeta>, IItems<VolumeSnapshotClass>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = VolumeSnapshotClass.Group + "/" + VolumeSnapshotClass.Version;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "VolumeSnapshotClassList";

    [JsonPropertyName("metadata")]
    public V1ListMeta Metadata { get; set; } = new();

    [JsonPropertyName("items")]
    public IList<VolumeSnapshotClass> Items { get; set; } = [];
}
