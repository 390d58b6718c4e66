using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Volumes;

/// <summary>One change the sync makes, in the order planned for its volume.</summary>
public abstract record VolumeStep
{
    /// <summary>For log lines.</summary>
    public virtual string Describe() => GetType().Name;
}

public sealed record AddFinalizer : VolumeStep;

public sealed record RemoveFinalizer : VolumeStep;

/// <summary>Marks a user Volume as the owner of a compatible master volume it did not create (annotation and finalizer).</summary>
public sealed record Adopt : VolumeStep;

public sealed record CreateMasterVolume(MasterVolumeRequest Request) : VolumeStep
{
    public override string Describe() => $"CreateMasterVolume {Request.SizeBytes} bytes, {Request.Replicas} replicas"
        + (Request.SourceSnapshot is { } snapshot ? $", from snapshot {snapshot}" : "");
}

public sealed record ResizeMasterVolume(long FromBytes, long ToBytes) : VolumeStep
{
    public override string Describe() => $"ResizeMasterVolume {FromBytes} -> {ToBytes} bytes";
}

public sealed record DeleteMasterVolume : VolumeStep;

/// <summary>Creates the Volume object that mirrors a master volume nobody declared.</summary>
public sealed record CreateMirror(Volume Mirror) : VolumeStep
{
    public override string Describe() => $"CreateMirror origin={Desired.Names.Value(Mirror.Metadata.Labels, VolumeNames.OriginLabel)}";
}

/// <summary>Rewrites a mirror's spec from the master (a mirror shows the master's truth, it does not drive it).</summary>
public sealed record UpdateMirrorSpec(VolumeSpec Spec) : VolumeStep
{
    public override string Describe() => $"UpdateMirrorSpec size={Spec.Size} replicas={Spec.Replicas} rackSpread={Spec.RackSpread}";
}

public sealed record DeleteMirror : VolumeStep;

/// <summary>An Event to record on the volume (or, with no volume object, on the StorageCluster).</summary>
public sealed record PlannedEvent(string Type, string Reason, string Message)
{
    public static PlannedEvent Normal(string reason, string message) => new("Normal", reason, message);
    public static PlannedEvent Warning(string reason, string message) => new("Warning", reason, message);
}

/// <summary>
/// What to do for one volume name: steps in order, then the status to write (null = leave it: it
/// did not change, or the object is going away), then the events.
/// </summary>
public sealed record VolumePlan(
    string Name,
    Volume? Current,
    IReadOnlyList<VolumeStep> Steps,
    VolumeStatus? Status,
    IReadOnlyList<PlannedEvent> Events,
    bool RetrySoon)
{
    public bool IsEmpty => Steps.Count == 0 && Status is null && Events.Count == 0 && !RetrySoon;
}

/// <summary>The plan of one StorageCluster's volumes.</summary>
public sealed record VolumeSyncPlan(IReadOnlyList<VolumePlan> Volumes, IReadOnlyList<PlannedEvent> ClusterEvents)
{
    /// <summary>Something waits on the master or on a detach: look again soon rather than at the next resync.</summary>
    public bool RetrySoon => Volumes.Any(v => v.RetrySoon);

    public VolumePlan? For(string name) => Volumes.FirstOrDefault(v => v.Name == name);
}
