using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Volumes;

/// <summary>A volume as the master reports it.</summary>
/// <param name="HealthyReplicas">
/// The fewest good replicas (not reported bad, on a chunk server the master considers alive) of any
/// chunk of the volume, at most <paramref name="Replicas"/>; equal to it for a volume without data; null when unknown.
/// </param>
public sealed record MasterVolume(
    string Name,
    long SizeBytes,
    int Replicas,
    IReadOnlyDictionary<string, string> Labels,
    string LeaseHolder,
    int? HealthyReplicas,
    IReadOnlyList<string>? Readers = null)
{
    /// <summary>Nodes that read the volume without its lease (read-only publishes).</summary>
    public IReadOnlyList<string> ReadOnlyNodes => Readers ?? [];

    public bool RackSpread => Labels.GetValueOrDefault(VolumeNames.CsiRackSpreadLabel, "true") == "true";
    public bool ManagedByCsi => Labels.ContainsKey(VolumeNames.CsiManagedByLabel);
    public string? CreatedForUid => Labels.GetValueOrDefault(VolumeNames.VolumeUidLabel);
    public bool Attached => LeaseHolder.Length > 0 || ReadOnlyNodes.Count > 0;

    /// <summary>Where the volume is attached: the lease holder, else the read-only nodes; empty when detached.</summary>
    public string AttachedTo => LeaseHolder.Length > 0 ? LeaseHolder
        : ReadOnlyNodes.Count > 0 ? string.Join(",", ReadOnlyNodes) + " (read-only)" : "";
}

/// <summary>What to create on the master for a user Volume: empty, or a clone of the cluster snapshot <paramref name="SourceSnapshot"/>.</summary>
public sealed record MasterVolumeRequest(string Name, long SizeBytes, int Replicas, IReadOnlyDictionary<string, string> Labels, string? SourceSnapshot = null);

public enum MasterFailure
{
    /// <summary>The master did not answer or failed internally: try again.</summary>
    Transient,
    /// <summary>The master refused the request itself (invalid, exists, precondition): retrying the same request cannot help.</summary>
    Refused,
}

/// <summary>A volume operation the master did not carry out.</summary>
public sealed class MasterVolumeException(MasterFailure failure, string message, Exception? inner = null) : Exception(message, inner)
{
    public MasterFailure Failure { get; } = failure;
}

/// <summary>The master's volume API, as the volume sync needs it.</summary>
public interface IMasterVolumes
{
    /// <summary>Every volume with its lease holder and replica health; null when the master does not answer.</summary>
    Task<IReadOnlyList<MasterVolume>?> ListAsync(StorageCluster cluster, CancellationToken ct);

    Task CreateAsync(StorageCluster cluster, MasterVolumeRequest request, CancellationToken ct);

    /// <summary>Grows the volume (the master refuses to shrink).</summary>
    Task ResizeAsync(StorageCluster cluster, string name, long sizeBytes, CancellationToken ct);

    /// <summary>Deletes the volume and its data unless a node has it attached (lease holder or reader); a missing volume is already deleted.</summary>
    Task DeleteAsync(StorageCluster cluster, string name, CancellationToken ct);
}
