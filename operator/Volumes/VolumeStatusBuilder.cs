using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using k8s;

namespace FeitianK8s.Operator.Volumes;

/// <summary>A condition's value, reason and message.</summary>
public readonly record struct ConditionValue(string Status, string Reason, string Message)
{
    public static ConditionValue True(string reason, string message) => new("True", reason, message);
    public static ConditionValue False(string reason, string message) => new("False", reason, message);
    public static ConditionValue Unknown(string reason, string message) => new(Conditions.Unknown, reason, message);
}

/// <summary>
/// Volume status (pure). The state is one of the CRD's enum; conditions are Ready (usable), Synced
/// (the master volume matches the spec, or why not) and Degraded (replica health), each carrying
/// the generation it describes. Conditions start from the previous ones so transition times stay put.
/// </summary>
public static class VolumeStatusBuilder
{
    public const string Creating = "Creating";
    public const string Available = "Available";
    public const string Attached = "Attached";
    public const string Degraded = "Degraded";
    public const string Deleting = "Deleting";
    public const string Failed = "Failed";

    /// <summary>Status of a volume that exists on the master: state, lease holder and health are the master's.</summary>
    public static VolumeStatus FromMaster(Volume cr, MasterVolume mv, bool deleting, ConditionValue synced)
    {
        var s = Start(cr);
        var generation = cr.Metadata.Generation;
        var healthy = mv.HealthyReplicas;
        var degraded = healthy < mv.Replicas;
        s.State = deleting ? Deleting : degraded ? Degraded : mv.Attached ? Attached : Available;
        s.AttachedNode = mv.Attached ? mv.AttachedTo : null;
        s.ReplicaHealth = healthy is { } h ? $"{h}/{mv.Replicas}" : null;
        s.SizeBytes = mv.SizeBytes;
        var ready = deleting
            ? ConditionValue.False("Deleting", "the volume is being deleted")
            : ConditionValue.True(s.State, mv.Attached ? $"attached to {mv.AttachedTo}" : "not attached to any node");
        Set(s, Conditions.Ready, ready, generation);
        Set(s, Conditions.Synced, synced, generation);
        Set(s, Conditions.Degraded, healthy switch
        {
            null => ConditionValue.Unknown("HealthUnknown", "the master's files changed while its replicas were counted"),
            _ when degraded => ConditionValue.True("ReplicasMissing", $"the worst chunk has {healthy} of {mv.Replicas} good replicas"),
            _ => ConditionValue.False("AllReplicasHealthy", $"every chunk has its {mv.Replicas} replicas"),
        }, generation);
        return s;
    }

    /// <summary>Status of a volume with no master volume (not created yet, refused, or lost).</summary>
    public static VolumeStatus WithoutMasterVolume(Volume cr, string state, ConditionValue ready, ConditionValue synced)
    {
        var s = Start(cr);
        s.State = state;
        var health = Conditions.Find(s.Conditions, Conditions.Degraded);
        if (health is not null)
        {
            s.Conditions.Remove(health);
        }
        Set(s, Conditions.Ready, ready, cr.Metadata.Generation);
        Set(s, Conditions.Synced, synced, cr.Metadata.Generation);
        return s;
    }

    /// <summary>The master does not answer: what was known stays, Ready becomes Unknown.</summary>
    public static VolumeStatus MasterUnreachable(Volume cr, bool deleting)
    {
        var previous = cr.Status;
        var s = Start(cr);
        s.State = deleting ? Deleting : previous?.State ?? Creating;
        s.AttachedNode = previous?.AttachedNode;
        s.ReplicaHealth = previous?.ReplicaHealth;
        s.SizeBytes = previous?.SizeBytes;
        const string message = "the master does not answer";
        Set(s, Conditions.Ready, ConditionValue.Unknown("MasterUnreachable", message), cr.Metadata.Generation);
        Set(s, Conditions.Synced, ConditionValue.False("MasterUnreachable", message), cr.Metadata.Generation);
        return s;
    }

    /// <summary>A master call of the plan failed: a failed create leaves no volume, a failed delete leaves it Deleting, anything else keeps the planned state.</summary>
    public static VolumeStatus MasterFailed(Volume cr, VolumeStatus? planned, VolumeStep step, MasterVolumeException e)
    {
        var synced = ConditionValue.False("MasterError", e.Message);
        if (step is CreateMasterVolume)
        {
            var state = e.Failure == MasterFailure.Refused ? Failed : Creating;
            return WithoutMasterVolume(cr, state, ConditionValue.False("MasterError", e.Message), synced);
        }
        var s = Clone(planned ?? cr.Status ?? new VolumeStatus());
        if (step is DeleteMasterVolume)
        {
            s.State = Deleting;
            Set(s, Conditions.Ready, ConditionValue.False("Deleting", "the volume is being deleted"), cr.Metadata.Generation);
        }
        Set(s, Conditions.Synced, synced, cr.Metadata.Generation);
        return s;
    }

    /// <summary>The status if it differs from what the object says, else null (nothing to write).</summary>
    public static VolumeStatus? IfChanged(VolumeStatus? previous, VolumeStatus next) =>
        previous is not null && KubernetesJson.Serialize(previous) == KubernetesJson.Serialize(next) ? null : next;

    private static VolumeStatus Start(Volume cr) => new()
    {
        Conditions = cr.Status?.Conditions?.Select(StatusBuilder.Clone).ToList() ?? [],
    };

    private static VolumeStatus Clone(VolumeStatus s) => KubernetesJson.Deserialize<VolumeStatus>(KubernetesJson.Serialize(s));

    private static void Set(VolumeStatus s, string type, ConditionValue value, long? generation) =>
        Conditions.Set(s.Conditions, type, value.Status, value.Reason, value.Message, generation);
}
