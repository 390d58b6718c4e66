using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Volumes;

/// <summary>What the volume sync of one StorageCluster sees.</summary>
/// <param name="Volumes">Volume objects whose spec.cluster names the cluster (same namespace).</param>
/// <param name="NamesTakenElsewhere">Names of Volume objects in the namespace that belong to other clusters.</param>
/// <param name="Master">The master's volumes; null when the master does not answer.</param>
public sealed record VolumeSyncInput(
    StorageCluster Cluster,
    IReadOnlyList<Volume> Volumes,
    IReadOnlySet<string> NamesTakenElsewhere,
    IReadOnlyList<MasterVolume>? Master);

/// <summary>
/// Plans the sync between a StorageCluster's Volume objects and its master's volumes (pure: no I/O).
/// User Volumes drive the master: created with a finalizer, grown, deleted when detached. Master
/// volumes nobody declared (made by the CSI driver or the CLI) get a mirror Volume that only shows
/// them: no finalizer, its deletion never deletes data, and it comes back while the volume exists.
/// Bad input changes nothing on the master; it shows as a condition and a Warning event.
/// </summary>
public static class VolumePlanner
{
    public const string InSyncReason = "InSync";
    public const string InSyncMessage = "the master volume matches the spec";

    public static VolumeSyncPlan Plan(VolumeSyncInput input)
    {
        var master = input.Master?.ToDictionary(v => v.Name, StringComparer.Ordinal);
        var plans = new List<VolumePlan>();
        var clusterEvents = new List<PlannedEvent>();
        foreach (var cr in input.Volumes.OrderBy(v => v.Metadata.Name, StringComparer.Ordinal))
        {
            var mv = master?.GetValueOrDefault(cr.Metadata.Name);
            plans.Add(IsMirror(cr) ? PlanMirror(input.Cluster, cr, master is not null, mv) : PlanUser(input.Cluster, cr, master is not null, mv));
        }
        if (master is not null)
        {
            var declared = input.Volumes.Select(v => v.Metadata.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var mv in master.Values.Where(v => !declared.Contains(v.Name)).OrderBy(v => v.Name, StringComparer.Ordinal))
            {
                if (input.NamesTakenElsewhere.Contains(mv.Name))
                {
                    clusterEvents.Add(PlannedEvent.Warning("MirrorNameTaken",
                        $"master volume '{mv.Name}' has no Volume object: the name is taken by a Volume of another cluster in this namespace"));
                    continue;
                }
                plans.Add(PlanNewMirror(input.Cluster, mv));
            }
        }
        return new VolumeSyncPlan(plans.Where(p => !p.IsEmpty).ToList(), clusterEvents);
    }

    /// <summary>
    /// The Volumes name a StorageCluster that does not exist: nothing can be created (it may still be
    /// applied), and a deleting user Volume is let go, since without a cluster there is no master to delete from.
    /// </summary>
    public static VolumeSyncPlan PlanWithoutCluster(string clusterName, IReadOnlyList<Volume> volumes)
    {
        var plans = new List<VolumePlan>();
        foreach (var cr in volumes.Where(v => !IsMirror(v)).OrderBy(v => v.Metadata.Name, StringComparer.Ordinal))
        {
            var b = new PlanBuilder(cr);
            var message = $"StorageCluster '{clusterName}' does not exist in namespace '{cr.Metadata.NamespaceProperty}'";
            if (cr.Metadata.DeletionTimestamp is not null)
            {
                if (cr.Metadata.Finalizers?.Contains(VolumeNames.Finalizer) == true)
                {
                    b.Steps.Add(new RemoveFinalizer());
                    b.Events.Add(PlannedEvent.Warning("ClusterNotFound", $"{message}; no master volume could be deleted"));
                }
            }
            else
            {
                b.Status = VolumeStatusBuilder.WithoutMasterVolume(cr, cr.Status?.State ?? VolumeStatusBuilder.Creating,
                    ConditionValue.False("ClusterNotFound", message), ConditionValue.False("ClusterNotFound", message));
            }
            plans.Add(b.Build());
        }
        return new VolumeSyncPlan(plans.Where(p => !p.IsEmpty).ToList(), []);
    }

    public static bool IsMirror(Volume cr) => Names.Value(cr.Metadata.Labels, VolumeNames.OriginLabel) is not null;

    /// <summary>A user Volume owns the master volume it was created for, or one it adopted; never one the CSI driver manages.</summary>
    public static bool Owns(Volume cr, MasterVolume mv) =>
        !mv.ManagedByCsi && (mv.CreatedForUid == cr.Metadata.Uid || Names.Value(cr.Metadata.Annotations, VolumeNames.AdoptedAnnotation) == "true");

    public static Dictionary<string, string> MasterLabels(Volume cr) => new(StringComparer.Ordinal)
    {
        [VolumeNames.VolumeUidLabel] = cr.Metadata.Uid ?? "",
        [VolumeNames.VolumeRefLabel] = $"{cr.Metadata.NamespaceProperty}/{cr.Metadata.Name}",
        [VolumeNames.CsiRackSpreadLabel] = cr.Spec.RackSpread ? "true" : "false",
    };

    // ---------- user Volumes ----------

    private static VolumePlan PlanUser(StorageCluster cluster, Volume cr, bool masterAnswered, MasterVolume? mv)
    {
        var b = new PlanBuilder(cr);
        var hasFinalizer = cr.Metadata.Finalizers?.Contains(VolumeNames.Finalizer) == true;
        if (cr.Metadata.DeletionTimestamp is not null)
        {
            return hasFinalizer ? PlanUserDeletion(cr, masterAnswered, mv, b) : b.Build();
        }
        if (!masterAnswered)
        {
            b.Status = VolumeStatusBuilder.MasterUnreachable(cr, deleting: false);
            b.RetrySoon = true;
            return b.Build();
        }
        var sizeOk = VolumeSize.TryParse(cr.Spec.Size, out var size, out var sizeError);
        if (mv is null)
        {
            return PlanCreate(cluster, cr, b, hasFinalizer, sizeOk ? size : null, sizeError);
        }
        return Owns(cr, mv) ? PlanOwned(cr, mv, b, hasFinalizer, sizeOk ? size : null, sizeError) : PlanCollision(cr, mv, b, sizeOk ? size : null, sizeError);
    }

    private static VolumePlan PlanUserDeletion(Volume cr, bool masterAnswered, MasterVolume? mv, PlanBuilder b)
    {
        var name = cr.Metadata.Name;
        if (!masterAnswered)
        {
            b.Status = VolumeStatusBuilder.MasterUnreachable(cr, deleting: true);
            b.RetrySoon = true;
            return b.Build();
        }
        if (mv is null)
        {
            b.Steps.Add(new RemoveFinalizer());
            return b.Build();
        }
        if (!Owns(cr, mv))
        {
            b.Steps.Add(new RemoveFinalizer());
            b.Events.Add(PlannedEvent.Normal("VolumeKept", $"master volume '{name}' was not created by this Volume; it and its data are kept"));
            return b.Build();
        }
        if (mv.Attached)
        {
            // The data is in use: keep the finalizer until every node lets go.
            var message = $"the volume is attached to {mv.AttachedTo}; it is deleted once detached";
            b.Status = VolumeStatusBuilder.FromMaster(cr, mv, deleting: true, ConditionValue.False("DeletionBlocked", message));
            b.Events.Add(PlannedEvent.Warning("DeletionBlocked", message));
            b.RetrySoon = true;
            return b.Build();
        }
        b.Steps.Add(new DeleteMasterVolume());
        b.Steps.Add(new RemoveFinalizer());
        b.Events.Add(PlannedEvent.Normal("VolumeDeleted", $"deleted master volume '{name}' and its data"));
        return b.Build();
    }

    private static VolumePlan PlanCreate(StorageCluster cluster, Volume cr, PlanBuilder b, bool hasFinalizer, long? size, string sizeError)
    {
        var name = cr.Metadata.Name;
        if (HadVolume(cr.Status))
        {
            var lost = $"the master has no volume '{name}' any more: it was deleted outside this Volume and is not recreated empty; delete this Volume";
            return Refuse(cr, b, "VolumeLost", lost);
        }
        var problem =
            size is null ? ("InvalidSize", sizeError)
            : cr.Spec.Replicas is < 1 or > 5 ? ("InvalidReplicas", $"spec.replicas must be from 1 to 5, got {cr.Spec.Replicas}")
            : cr.Spec.SourceSnapshot is { } snapshot && !VolumeNames.IsSnapshotName(snapshot)
                ? ("InvalidSourceSnapshot", $"spec.sourceSnapshot '{snapshot}' is not a snapshot name (a DNS-1123 subdomain of at most 253 characters); nothing was created")
            : cluster.Metadata.DeletionTimestamp is not null ? ("ClusterDeleting", $"StorageCluster '{cluster.Metadata.Name}' is being deleted; no new volumes")
            : ((string Reason, string Message)?)null;
        if (problem is { } p)
        {
            return Refuse(cr, b, p.Reason, p.Message);
        }
        if (!hasFinalizer)
        {
            b.Steps.Add(new AddFinalizer());
        }
        var labels = MasterLabels(cr);
        var source = string.IsNullOrEmpty(cr.Spec.SourceSnapshot) ? null : cr.Spec.SourceSnapshot;
        b.Steps.Add(new CreateMasterVolume(new MasterVolumeRequest(name, size!.Value, cr.Spec.Replicas, labels, source)));
        // A new volume holds no chunk, so none lacks a replica.
        var created = new MasterVolume(name, size.Value, cr.Spec.Replicas, labels, "", cr.Spec.Replicas);
        b.Status = VolumeStatusBuilder.FromMaster(cr, created, deleting: false, ConditionValue.True(InSyncReason, InSyncMessage));
        b.Events.Add(PlannedEvent.Normal("Created",
            $"created master volume '{name}': {VolumeSize.Format(size.Value)} ({size} bytes), {cr.Spec.Replicas} replicas, rack spread {(cr.Spec.RackSpread ? "on" : "off")}"
            + (source is null ? "" : $", a clone of snapshot '{source}'")));
        return b.Build();
    }

    private static VolumePlan PlanCollision(Volume cr, MasterVolume mv, PlanBuilder b, long? size, string sizeError)
    {
        var mismatches = new List<string>();
        if (mv.ManagedByCsi)
        {
            mismatches.Add("it is managed by the CSI driver (a PersistentVolume uses it)");
        }
        if (size is null)
        {
            mismatches.Add(sizeError);
        }
        else if (size != mv.SizeBytes)
        {
            mismatches.Add($"spec.size is {size} bytes, the volume has {mv.SizeBytes}");
        }
        if (cr.Spec.Replicas != mv.Replicas)
        {
            mismatches.Add($"spec.replicas is {cr.Spec.Replicas}, the volume has {mv.Replicas}");
        }
        if (cr.Spec.RackSpread != mv.RackSpread)
        {
            mismatches.Add($"spec.rackSpread is {cr.Spec.RackSpread.ToString().ToLowerInvariant()}, the volume has {mv.RackSpread.ToString().ToLowerInvariant()}");
        }
        if (mismatches.Count > 0)
        {
            return Refuse(cr, b, "NameConflict",
                $"master volume '{mv.Name}' already exists and was not created by this Volume; not adopted: {string.Join("; ", mismatches)}");
        }
        b.Steps.Add(new Adopt());
        b.Status = VolumeStatusBuilder.FromMaster(cr, mv, deleting: false, ConditionValue.True(InSyncReason, InSyncMessage));
        b.Events.Add(PlannedEvent.Normal("Adopted", $"adopted existing master volume '{mv.Name}' (same size, replicas and rack spread); deleting this Volume now deletes it"));
        return b.Build();
    }

    private static VolumePlan PlanOwned(Volume cr, MasterVolume mv, PlanBuilder b, bool hasFinalizer, long? size, string sizeError)
    {
        if (!hasFinalizer)
        {
            b.Steps.Add(new AddFinalizer());
        }
        var problems = new List<(string Reason, string Message)>();
        var after = mv;
        if (size is null)
        {
            problems.Add(("InvalidSize", sizeError));
        }
        else if (size > mv.SizeBytes)
        {
            b.Steps.Add(new ResizeMasterVolume(mv.SizeBytes, size.Value));
            after = mv with { SizeBytes = size.Value };
            b.Events.Add(PlannedEvent.Normal("Expanded", $"grew master volume '{mv.Name}' from {mv.SizeBytes} to {size} bytes"));
        }
        else if (size < mv.SizeBytes)
        {
            problems.Add(("ShrinkRefused",
                $"spec.size {cr.Spec.Size} ({size} bytes) is smaller than the volume's {mv.SizeBytes} bytes; volumes never shrink, nothing was changed"));
        }
        if (cr.Spec.Replicas != mv.Replicas)
        {
            problems.Add(("ReplicasImmutable", $"spec.replicas is {cr.Spec.Replicas} but the volume has {mv.Replicas}; the replica count is fixed at creation"));
        }
        if (cr.Spec.RackSpread != mv.RackSpread)
        {
            problems.Add(("RackSpreadImmutable",
                $"spec.rackSpread is {cr.Spec.RackSpread.ToString().ToLowerInvariant()} but the volume was created with {mv.RackSpread.ToString().ToLowerInvariant()}; it is fixed at creation"));
        }
        var synced = problems.Count == 0
            ? ConditionValue.True(InSyncReason, InSyncMessage)
            : ConditionValue.False(problems[0].Reason, string.Join("; ", problems.Select(p => p.Message)));
        b.Events.AddRange(problems.Select(p => PlannedEvent.Warning(p.Reason, p.Message)));
        b.Status = VolumeStatusBuilder.FromMaster(cr, after, deleting: false, synced);
        return b.Build();
    }

    /// <summary>Nothing changes on the master: the Volume is Failed with the reason, and a Warning says why.</summary>
    private static VolumePlan Refuse(Volume cr, PlanBuilder b, string reason, string message)
    {
        b.Status = VolumeStatusBuilder.WithoutMasterVolume(cr, VolumeStatusBuilder.Failed,
            ConditionValue.False(reason, message), ConditionValue.False(reason, message));
        b.Events.Add(PlannedEvent.Warning(reason, message));
        return b.Build();
    }

    /// <summary>The status says a master volume existed (so its absence now is a loss, not a volume still to create).</summary>
    private static bool HadVolume(VolumeStatus? status) =>
        status?.State is VolumeStatusBuilder.Available or VolumeStatusBuilder.Attached or VolumeStatusBuilder.Degraded
        || Conditions.Find(status?.Conditions, Conditions.Synced)?.Reason == "VolumeLost";

    // ---------- mirrors ----------

    private static VolumePlan PlanMirror(StorageCluster cluster, Volume cr, bool masterAnswered, MasterVolume? mv)
    {
        var b = new PlanBuilder(cr);
        if (cr.Metadata.DeletionTimestamp is not null)
        {
            // Deleting a mirror never deletes data; a finalizer of ours on it (added by hand) is simply let go.
            if (cr.Metadata.Finalizers?.Contains(VolumeNames.Finalizer) == true)
            {
                b.Steps.Add(new RemoveFinalizer());
            }
            return b.Build();
        }
        if (!masterAnswered)
        {
            b.Status = VolumeStatusBuilder.MasterUnreachable(cr, deleting: false);
            return b.Build();
        }
        if (mv is null)
        {
            b.Steps.Add(new DeleteMirror());
            return b.Build();
        }
        var spec = MirrorSpec(cluster, mv, cr.Spec.AccessMode);
        if (spec.Size != cr.Spec.Size || spec.Replicas != cr.Spec.Replicas || spec.RackSpread != cr.Spec.RackSpread || cr.Spec.SourceSnapshot is not null)
        {
            b.Steps.Add(new UpdateMirrorSpec(spec));
        }
        b.Status = VolumeStatusBuilder.FromMaster(cr, mv, deleting: false, MirrorSynced(mv));
        return b.Build();
    }

    private static VolumePlan PlanNewMirror(StorageCluster cluster, MasterVolume mv)
    {
        var origin = Origin(mv);
        var mirror = new Volume
        {
            Metadata = new V1ObjectMeta
            {
                Name = mv.Name,
                NamespaceProperty = cluster.Metadata.NamespaceProperty,
                Labels = new Dictionary<string, string>
                {
                    [VolumeNames.OriginLabel] = origin,
                    [Names.ClusterLabel] = cluster.Metadata.Name,
                    [Names.ManagedByLabel] = Names.ManagedByValue,
                },
                OwnerReferences = [Meta.OwnerReference(cluster)],
            },
            Spec = MirrorSpec(cluster, mv, "ReadWriteOnce"),
        };
        // The API server gives a new object generation 1: the status describes that generation.
        var created = new Volume { Metadata = new V1ObjectMeta { Name = mv.Name, Generation = 1 }, Spec = mirror.Spec };
        var b = new PlanBuilder(null, mv.Name);
        b.Steps.Add(new CreateMirror(mirror));
        b.Status = VolumeStatusBuilder.FromMaster(created, mv, deleting: false, MirrorSynced(mv));
        b.Events.Add(PlannedEvent.Normal("Mirrored", $"master volume '{mv.Name}' (made by {origin}) is shown here; deleting this Volume never deletes its data"));
        return b.Build();
    }

    public static VolumeSpec MirrorSpec(StorageCluster cluster, MasterVolume mv, string accessMode) => new()
    {
        Cluster = cluster.Metadata.Name,
        Size = VolumeSize.Format(mv.SizeBytes),
        Replicas = mv.Replicas,
        RackSpread = mv.RackSpread,
        AccessMode = accessMode,
    };

    private static string Origin(MasterVolume mv) => mv.ManagedByCsi ? VolumeNames.OriginCsi : VolumeNames.OriginMaster;

    private static ConditionValue MirrorSynced(MasterVolume mv) => ConditionValue.True("Mirrored",
        $"mirrors a master volume made by {Origin(mv)}; deleting this Volume never deletes data, it comes back while the master volume exists");

    private sealed class PlanBuilder(Volume? current, string? name = null)
    {
        public List<VolumeStep> Steps { get; } = [];
        public List<PlannedEvent> Events { get; } = [];
        public VolumeStatus? Status { get; set; }
        public bool RetrySoon { get; set; }

        public VolumePlan Build() => new(name ?? current!.Metadata.Name, current, Steps, Status is null ? null : VolumeStatusBuilder.IfChanged(current?.Status, Status),
            Events, RetrySoon);
    }
}
