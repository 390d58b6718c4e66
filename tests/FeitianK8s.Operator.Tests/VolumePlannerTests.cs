using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Operator.Volumes;
using k8s.Models;

namespace FeitianK8s.Operator.Tests;

public sealed class VolumePlannerTests
{
    private const long Gi = 1L << 30;
    private static readonly StorageCluster Cluster = TestClusters.Minimal();

    private static Volume User(string name = "data", string size = "10Gi", int replicas = 3, bool rackSpread = true, bool finalizer = false,
        bool deleting = false, long generation = 1, VolumeStatus? status = null, bool adopted = false, string? sourceSnapshot = null) => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = "storage",
            Uid = $"uid-{name}",
            Generation = generation,
            Finalizers = finalizer ? [VolumeNames.Finalizer] : null,
            DeletionTimestamp = deleting ? DateTime.UtcNow : null,
            Annotations = adopted ? new Dictionary<string, string> { [VolumeNames.AdoptedAnnotation] = "true" } : null,
        },
        Spec = new VolumeSpec { Cluster = "prod", Size = size, Replicas = replicas, RackSpread = rackSpread, SourceSnapshot = sourceSnapshot },
        Status = status,
    };

    private static Volume Mirror(string name, string size = "10Gi", int replicas = 3, bool deleting = false, string origin = VolumeNames.OriginCsi) => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = name,
            NamespaceProperty = "storage",
            Uid = $"uid-{name}",
            Generation = 1,
            Labels = new Dictionary<string, string> { [VolumeNames.OriginLabel] = origin },
            DeletionTimestamp = deleting ? DateTime.UtcNow : null,
            Finalizers = deleting ? ["someone.else/hold"] : null,
        },
        Spec = new VolumeSpec { Cluster = "prod", Size = size, Replicas = replicas },
    };

    /// <summary>A master volume the operator created for the user Volume <paramref name="name"/>.</summary>
    private static MasterVolume Owned(string name = "data", long size = 10 * Gi, int replicas = 3, string lease = "", int? healthy = -1,
        string[]? readers = null) =>
        new(name, size, replicas, new Dictionary<string, string>
        {
            [VolumeNames.VolumeUidLabel] = $"uid-{name}",
            [VolumeNames.CsiRackSpreadLabel] = "true",
        }, lease, healthy == -1 ? replicas : healthy, readers);

    /// <summary>A master volume as the CSI driver creates it (VolumeParameters.ToLabels).</summary>
    private static MasterVolume Csi(string name, long size = 10 * Gi, int replicas = 3, bool rackSpread = true, string lease = "") =>
        new(name, size, replicas, new Dictionary<string, string>
        {
            [VolumeNames.CsiManagedByLabel] = Names.CsiDriverName,
            [VolumeNames.CsiRackSpreadLabel] = rackSpread ? "true" : "false",
            ["csi.feitian.io/fs-type"] = "ext4",
        }, lease, replicas);

    /// <summary>A master volume made some other way (the feitian CLI): no labels.</summary>
    private static MasterVolume Plain(string name, long size = 10 * Gi, int replicas = 3) => new(name, size, replicas, new Dictionary<string, string>(), "", replicas);

    private static VolumeSyncPlan Plan(IEnumerable<Volume> volumes, IEnumerable<MasterVolume>? master, StorageCluster? cluster = null, params string[] elsewhere) =>
        VolumePlanner.Plan(new VolumeSyncInput(cluster ?? Cluster, volumes.ToList(), elsewhere.ToHashSet(), master?.ToList()));

    private static V1Condition Condition(VolumeStatus status, string type) => status.Conditions.Single(c => c.Type == type);

    private static VolumeStatus Written(VolumeSyncPlan plan, string name) =>
        plan.For(name)?.Status ?? throw new Xunit.Sdk.XunitException($"no status planned for {name}");

    // ---------- user Volumes: create ----------

    [Fact]
    public void A_user_volume_without_a_master_volume_gets_a_finalizer_then_a_master_volume_and_is_available()
    {
        var plan = Plan([User(size: "10Gi", replicas: 2, rackSpread: false)], []).For("data")!;

        Assert.IsType<AddFinalizer>(plan.Steps[0]);
        var create = Assert.IsType<CreateMasterVolume>(plan.Steps[1]).Request;
        Assert.Equal(2, plan.Steps.Count);
        Assert.Equal(("data", 10 * Gi, 2), (create.Name, create.SizeBytes, create.Replicas));
        Assert.Equal("uid-data", create.Labels[VolumeNames.VolumeUidLabel]);
        Assert.Equal("storage/data", create.Labels[VolumeNames.VolumeRefLabel]);
        Assert.Equal("false", create.Labels[VolumeNames.CsiRackSpreadLabel]);
        Assert.Equal(VolumeStatusBuilder.Available, plan.Status!.State);
        Assert.Equal("2/2", plan.Status.ReplicaHealth);
        Assert.Equal(10 * Gi, plan.Status.SizeBytes);
        Assert.Null(plan.Status.AttachedNode);
        var ready = Condition(plan.Status, Conditions.Ready);
        Assert.Equal(("True", 1L), (ready.Status, ready.ObservedGeneration));
        Assert.Contains(plan.Events, e => e is { Type: "Normal", Reason: "Created" });
        Assert.False(plan.RetrySoon);
    }

    [Fact]
    public void The_size_is_rounded_up_to_4_KiB_when_the_master_volume_is_created()
    {
        var create = Plan([User(size: "5000")], []).For("data")!.Steps.OfType<CreateMasterVolume>().Single();
        Assert.Equal(8192, create.Request.SizeBytes);
    }

    [Fact]
    public void A_user_volume_that_already_has_the_finalizer_is_not_given_a_second_one()
    {
        var plan = Plan([User(finalizer: true)], []).For("data")!;
        Assert.IsType<CreateMasterVolume>(Assert.Single(plan.Steps));
    }

    [Theory]
    [InlineData("ten gigs", "InvalidSize")]
    [InlineData("0", "InvalidSize")]
    [InlineData("99999999999999999999999999Pi", "InvalidSize")]
    public void A_bad_size_is_a_failed_condition_and_a_warning_and_creates_nothing(string size, string reason)
    {
        var plan = Plan([User(size: size)], []).For("data")!;

        Assert.Empty(plan.Steps);
        Assert.Equal(VolumeStatusBuilder.Failed, plan.Status!.State);
        Assert.Equal(("False", reason), (Condition(plan.Status, Conditions.Ready).Status, Condition(plan.Status, Conditions.Ready).Reason));
        Assert.Contains(size, Condition(plan.Status, Conditions.Synced).Message);
        Assert.Contains(plan.Events, e => e is { Type: "Warning" } && e.Reason == reason);
    }

    [Fact]
    public void Replicas_out_of_range_a_malformed_source_snapshot_or_a_deleting_cluster_create_nothing()
    {
        var deletingCluster = TestClusters.Minimal();
        deletingCluster.Metadata.DeletionTimestamp = DateTime.UtcNow;
        var cases = new (VolumeSyncPlan Plan, string Reason)[]
        {
            (Plan([User(replicas: 7)], []), "InvalidReplicas"),
            (Plan([User(sourceSnapshot: "Snap_1")], []), "InvalidSourceSnapshot"),
            (Plan([User()], [], deletingCluster), "ClusterDeleting"),
        };
        foreach (var (plan, reason) in cases)
        {
            var p = plan.For("data")!;
            Assert.Empty(p.Steps);
            Assert.Equal(VolumeStatusBuilder.Failed, p.Status!.State);
            Assert.Equal(reason, Condition(p.Status, Conditions.Synced).Reason);
            Assert.Contains(p.Events, e => e.Type == "Warning" && e.Reason == reason);
        }
    }

    [Fact]
    public void A_source_snapshot_creates_the_master_volume_as_a_clone_of_it_with_the_volumes_labels()
    {
        var p = Plan([User(sourceSnapshot: "nightly.2026-12-06", replicas: 2)], []).For("data")!;
        Assert.IsType<AddFinalizer>(p.Steps[0]);
        var create = Assert.IsType<CreateMasterVolume>(p.Steps[1]);
        Assert.Equal(("data", 10 * Gi, 2, "nightly.2026-12-06"), (create.Request.Name, create.Request.SizeBytes, create.Request.Replicas, create.Request.SourceSnapshot));
        Assert.Equal("uid-data", create.Request.Labels[VolumeNames.VolumeUidLabel]);
        Assert.Contains("snapshot 'nightly.2026-12-06'", Assert.Single(p.Events, e => e.Reason == "Created").Message);
        // Without one, the volume is made empty.
        Assert.Null(Assert.IsType<CreateMasterVolume>(Plan([User()], []).For("data")!.Steps[1]).Request.SourceSnapshot);
    }

    [Fact]
    public void When_the_master_does_not_answer_nothing_is_created_no_finalizer_is_added_and_it_is_retried()
    {
        var plan = Plan([User()], master: null);
        var p = plan.For("data")!;

        Assert.Empty(p.Steps);
        Assert.Equal(VolumeStatusBuilder.Creating, p.Status!.State);
        Assert.Equal(("Unknown", "MasterUnreachable"), (Condition(p.Status, Conditions.Ready).Status, Condition(p.Status, Conditions.Ready).Reason));
        Assert.True(plan.RetrySoon);
    }

    [Fact]
    public void A_volume_whose_master_volume_vanished_is_reported_lost_and_not_recreated_empty()
    {
        var available = VolumeStatusBuilder.FromMaster(User(), Owned(), deleting: false, ConditionValue.True(VolumePlanner.InSyncReason, VolumePlanner.InSyncMessage));
        var plan = Plan([User(finalizer: true, status: available)], []).For("data")!;

        Assert.Empty(plan.Steps);
        Assert.Equal(VolumeStatusBuilder.Failed, plan.Status!.State);
        Assert.Equal("VolumeLost", Condition(plan.Status, Conditions.Synced).Reason);
        Assert.DoesNotContain(plan.Status.Conditions, c => c.Type == Conditions.Degraded);
        Assert.Contains(plan.Events, e => e is { Type: "Warning", Reason: "VolumeLost" });

        // And it stays lost on the next pass: the status written says so.
        var again = Plan([User(finalizer: true, status: plan.Status)], []).For("data")!;
        Assert.Empty(again.Steps);
        Assert.Null(again.Status);
    }

    // ---------- user Volumes: status of an existing master volume ----------

    [Fact]
    public void An_owned_master_volume_gives_state_health_and_a_ready_condition_with_the_generation()
    {
        var plan = Plan([User(finalizer: true, generation: 4)], [Owned()]).For("data")!;

        Assert.Empty(plan.Steps);
        Assert.Equal(VolumeStatusBuilder.Available, plan.Status!.State);
        Assert.Equal("3/3", plan.Status.ReplicaHealth);
        var ready = Condition(plan.Status, Conditions.Ready);
        Assert.Equal(("True", VolumeStatusBuilder.Available, 4L), (ready.Status, ready.Reason, ready.ObservedGeneration));
        Assert.Equal(("True", VolumePlanner.InSyncReason), (Condition(plan.Status, Conditions.Synced).Status, Condition(plan.Status, Conditions.Synced).Reason));
        Assert.Equal("False", Condition(plan.Status, Conditions.Degraded).Status);
    }

    [Fact]
    public void An_owned_volume_that_lost_its_finalizer_gets_it_back()
    {
        Assert.IsType<AddFinalizer>(Assert.Single(Plan([User(finalizer: false)], [Owned()]).For("data")!.Steps));
    }

    [Fact]
    public void The_lease_holder_is_the_attached_node()
    {
        var status = Written(Plan([User(finalizer: true)], [Owned(lease: "node-a1")]), "data");
        Assert.Equal(VolumeStatusBuilder.Attached, status.State);
        Assert.Equal("node-a1", status.AttachedNode);
        Assert.Equal("Attached", Condition(status, Conditions.Ready).Reason);
    }

    [Fact]
    public void Missing_replicas_make_the_volume_degraded_and_unknown_health_says_so()
    {
        var degraded = Written(Plan([User(finalizer: true)], [Owned(healthy: 2, lease: "node-a1")]), "data");
        Assert.Equal(VolumeStatusBuilder.Degraded, degraded.State);
        Assert.Equal("2/3", degraded.ReplicaHealth);
        Assert.Equal("node-a1", degraded.AttachedNode);
        Assert.Equal(("True", "ReplicasMissing"), (Condition(degraded, Conditions.Degraded).Status, Condition(degraded, Conditions.Degraded).Reason));

        var unknown = Written(Plan([User(finalizer: true)], [Owned(healthy: null)]), "data");
        Assert.Equal(VolumeStatusBuilder.Available, unknown.State);
        Assert.Null(unknown.ReplicaHealth);
        Assert.Equal("Unknown", Condition(unknown, Conditions.Degraded).Status);
    }

    [Fact]
    public void Status_is_planned_only_when_it_changed()
    {
        var first = Plan([User(finalizer: true)], [Owned()]);
        var status = Written(first, "data");
        Assert.Null(Plan([User(finalizer: true, status: status)], [Owned()]).For("data"));

        var attached = Plan([User(finalizer: true, status: status)], [Owned(lease: "node-b1")]);
        var changed = Written(attached, "data");
        Assert.Equal("node-b1", changed.AttachedNode);
        // Ready stayed True: its transition time did not move.
        Assert.Equal(Condition(status, Conditions.Ready).LastTransitionTime, Condition(changed, Conditions.Ready).LastTransitionTime);
    }

    [Fact]
    public void A_bigger_size_grows_the_master_volume()
    {
        var plan = Plan([User(size: "20Gi", finalizer: true, generation: 2)], [Owned(size: 10 * Gi)]).For("data")!;

        var resize = Assert.IsType<ResizeMasterVolume>(Assert.Single(plan.Steps));
        Assert.Equal((10 * Gi, 20 * Gi), (resize.FromBytes, resize.ToBytes));
        Assert.Equal(20 * Gi, plan.Status!.SizeBytes);
        Assert.Equal(VolumePlanner.InSyncReason, Condition(plan.Status, Conditions.Synced).Reason);
        Assert.Contains(plan.Events, e => e is { Type: "Normal", Reason: "Expanded" });
    }

    [Fact]
    public void The_same_size_written_differently_changes_nothing()
    {
        Assert.Empty(Plan([User(size: "10240Mi", finalizer: true)], [Owned(size: 10 * Gi)]).For("data")!.Steps);
    }

    [Fact]
    public void A_smaller_size_is_refused_with_a_condition_and_a_warning_and_nothing_changes()
    {
        var plan = Plan([User(size: "5Gi", finalizer: true, generation: 3)], [Owned(size: 10 * Gi)]).For("data")!;

        Assert.Empty(plan.Steps);
        Assert.Equal(VolumeStatusBuilder.Available, plan.Status!.State);
        Assert.Equal(10 * Gi, plan.Status.SizeBytes);
        var synced = Condition(plan.Status, Conditions.Synced);
        Assert.Equal(("False", "ShrinkRefused", 3L), (synced.Status, synced.Reason, synced.ObservedGeneration));
        Assert.Contains(plan.Events, e => e is { Type: "Warning", Reason: "ShrinkRefused" });
    }

    [Fact]
    public void Replicas_and_rack_spread_are_fixed_at_creation()
    {
        var plan = Plan([User(replicas: 2, rackSpread: false, finalizer: true)], [Owned(replicas: 3)]).For("data")!;

        Assert.Empty(plan.Steps);
        Assert.Equal("ReplicasImmutable", Condition(plan.Status!, Conditions.Synced).Reason);
        Assert.Contains("rackSpread", Condition(plan.Status!, Conditions.Synced).Message);
        Assert.Contains(plan.Events, e => e.Reason == "ReplicasImmutable");
        Assert.Contains(plan.Events, e => e.Reason == "RackSpreadImmutable");
    }

    [Fact]
    public void A_size_made_invalid_after_creation_is_reported_and_the_volume_stays()
    {
        var plan = Plan([User(size: "lots", finalizer: true)], [Owned()]).For("data")!;
        Assert.Empty(plan.Steps);
        Assert.Equal(VolumeStatusBuilder.Available, plan.Status!.State);
        Assert.Equal("InvalidSize", Condition(plan.Status, Conditions.Synced).Reason);
    }

    // ---------- user Volumes: deletion ----------

    [Fact]
    public void Deleting_an_attached_volume_is_blocked_with_a_condition_and_a_warning()
    {
        var plan = Plan([User(finalizer: true, deleting: true)], [Owned(lease: "node-c2")]);
        var p = plan.For("data")!;

        Assert.Empty(p.Steps);
        Assert.Equal(VolumeStatusBuilder.Deleting, p.Status!.State);
        Assert.Equal("node-c2", p.Status.AttachedNode);
        Assert.Equal(("False", "DeletionBlocked"), (Condition(p.Status, Conditions.Synced).Status, Condition(p.Status, Conditions.Synced).Reason));
        Assert.Contains(p.Events, e => e is { Type: "Warning", Reason: "DeletionBlocked" });
        Assert.True(plan.RetrySoon);
    }

    [Fact]
    public void Read_only_nodes_attach_the_volume_and_block_its_deletion()
    {
        var status = Written(Plan([User(finalizer: true)], [Owned(readers: ["node-r1", "node-r2"])]), "data");
        Assert.Equal(VolumeStatusBuilder.Attached, status.State);
        Assert.Equal("node-r1,node-r2 (read-only)", status.AttachedNode);

        var plan = Plan([User(finalizer: true, deleting: true)], [Owned(readers: ["node-r1"])]);
        Assert.Empty(plan.For("data")!.Steps);
        Assert.Contains(plan.For("data")!.Events, e => e is { Type: "Warning", Reason: "DeletionBlocked" });
        Assert.True(plan.RetrySoon);
    }

    [Fact]
    public void Deleting_a_detached_volume_deletes_the_master_volume_then_the_finalizer()
    {
        var p = Plan([User(finalizer: true, deleting: true)], [Owned()]).For("data")!;
        Assert.Collection(p.Steps, s => Assert.IsType<DeleteMasterVolume>(s), s => Assert.IsType<RemoveFinalizer>(s));
        Assert.Null(p.Status);
        Assert.Contains(p.Events, e => e.Reason == "VolumeDeleted");
    }

    [Fact]
    public void Deleting_when_the_master_volume_is_already_gone_only_removes_the_finalizer()
    {
        Assert.IsType<RemoveFinalizer>(Assert.Single(Plan([User(finalizer: true, deleting: true)], []).For("data")!.Steps));
    }

    [Fact]
    public void Deleting_a_volume_that_does_not_own_its_master_volume_never_deletes_data()
    {
        var p = Plan([User(finalizer: true, deleting: true)], [Csi("data")]).For("data")!;
        Assert.IsType<RemoveFinalizer>(Assert.Single(p.Steps));
        Assert.Contains(p.Events, e => e.Reason == "VolumeKept");
    }

    [Fact]
    public void Deleting_while_the_master_does_not_answer_keeps_the_finalizer_and_retries()
    {
        var plan = Plan([User(finalizer: true, deleting: true)], master: null);
        Assert.Empty(plan.For("data")!.Steps);
        Assert.Equal(VolumeStatusBuilder.Deleting, plan.For("data")!.Status!.State);
        Assert.True(plan.RetrySoon);
    }

    [Fact]
    public void A_deleting_volume_without_our_finalizer_is_left_alone()
    {
        Assert.Null(Plan([User(finalizer: false, deleting: true)], [Owned()]).For("data"));
    }

    // ---------- name collisions ----------

    [Fact]
    public void A_user_volume_named_like_a_csi_volume_is_not_adopted()
    {
        var p = Plan([User(name: "pvc-1")], [Csi("pvc-1")]).For("pvc-1")!;

        Assert.Empty(p.Steps);
        Assert.Equal(VolumeStatusBuilder.Failed, p.Status!.State);
        Assert.Null(p.Status.AttachedNode);
        Assert.Equal("NameConflict", Condition(p.Status, Conditions.Synced).Reason);
        Assert.Contains("CSI driver", Condition(p.Status, Conditions.Synced).Message);
        Assert.Contains(p.Events, e => e is { Type: "Warning", Reason: "NameConflict" });
    }

    [Fact]
    public void A_compatible_master_volume_made_elsewhere_is_adopted_and_then_owned()
    {
        var p = Plan([User(name: "cli-vol", size: "10Gi")], [Plain("cli-vol", 10 * Gi)]).For("cli-vol")!;
        Assert.IsType<Adopt>(Assert.Single(p.Steps));
        Assert.Equal(VolumeStatusBuilder.Available, p.Status!.State);
        Assert.Contains(p.Events, e => e.Reason == "Adopted");

        // Adopted (annotation and finalizer): deleting it now deletes the master volume.
        var delete = Plan([User(name: "cli-vol", finalizer: true, adopted: true, deleting: true)], [Plain("cli-vol", 10 * Gi)]).For("cli-vol")!;
        Assert.IsType<DeleteMasterVolume>(delete.Steps[0]);
    }

    [Theory]
    [InlineData("20Gi", 3, true, "spec.size")]
    [InlineData("10Gi", 2, true, "spec.replicas")]
    [InlineData("10Gi", 3, false, "spec.rackSpread")]
    public void An_incompatible_master_volume_made_elsewhere_is_a_conflict_and_nothing_changes(string size, int replicas, bool rackSpread, string what)
    {
        var p = Plan([User(name: "cli-vol", size: size, replicas: replicas, rackSpread: rackSpread)], [Plain("cli-vol", 10 * Gi)]).For("cli-vol")!;
        Assert.Empty(p.Steps);
        Assert.Equal("NameConflict", Condition(p.Status!, Conditions.Synced).Reason);
        Assert.Contains(what, Condition(p.Status!, Conditions.Synced).Message);
    }

    [Fact]
    public void A_master_volume_created_for_another_volume_object_is_not_owned_by_a_new_one_with_the_same_name()
    {
        var other = Owned() with { Labels = new Dictionary<string, string> { [VolumeNames.VolumeUidLabel] = "uid-of-an-older-object" } };
        Assert.False(VolumePlanner.Owns(User(), other));
        Assert.True(VolumePlanner.Owns(User(), Owned()));
        Assert.False(VolumePlanner.Owns(User(adopted: true), Csi("data")));
    }

    // ---------- mirrors ----------

    [Fact]
    public void A_csi_volume_without_a_volume_object_gets_a_mirror_owned_by_the_cluster_without_a_finalizer()
    {
        var plan = Plan([], [Csi("pvc-9", size: 3 * Gi, replicas: 2, rackSpread: false, lease: "node-b2")]);
        var p = plan.For("pvc-9")!;

        var mirror = Assert.IsType<CreateMirror>(Assert.Single(p.Steps)).Mirror;
        Assert.Equal(("pvc-9", "storage"), (mirror.Metadata.Name, mirror.Metadata.NamespaceProperty));
        Assert.Equal(VolumeNames.OriginCsi, mirror.Metadata.Labels[VolumeNames.OriginLabel]);
        Assert.Equal("prod", mirror.Metadata.Labels[Names.ClusterLabel]);
        Assert.Null(mirror.Metadata.Finalizers);
        var owner = Assert.Single(mirror.Metadata.OwnerReferences);
        Assert.Equal((StorageCluster.KindName, "prod", "uid-prod"), (owner.Kind, owner.Name, owner.Uid));
        Assert.Equal(("prod", "3Gi", 2, false, "ReadWriteOnce"), (mirror.Spec.Cluster, mirror.Spec.Size, mirror.Spec.Replicas, mirror.Spec.RackSpread, mirror.Spec.AccessMode));
        Assert.Equal(VolumeStatusBuilder.Attached, p.Status!.State);
        Assert.Equal("node-b2", p.Status.AttachedNode);
        Assert.Equal("2/2", p.Status.ReplicaHealth);
        Assert.Equal(1L, Condition(p.Status, Conditions.Ready).ObservedGeneration);
        Assert.Contains(p.Events, e => e.Reason == "Mirrored");
    }

    [Fact]
    public void A_master_volume_made_without_csi_is_mirrored_with_origin_master()
    {
        var mirror = Plan([], [Plain("cli-vol")]).For("cli-vol")!.Steps.OfType<CreateMirror>().Single().Mirror;
        Assert.Equal(VolumeNames.OriginMaster, mirror.Metadata.Labels[VolumeNames.OriginLabel]);
    }

    [Fact]
    public void A_mirror_goes_when_its_master_volume_goes()
    {
        Assert.IsType<DeleteMirror>(Assert.Single(Plan([Mirror("pvc-9")], []).For("pvc-9")!.Steps));
    }

    [Fact]
    public void A_deleted_mirror_never_deletes_data_and_comes_back()
    {
        // Being deleted (another finalizer holds it): nothing to do, certainly not a master delete.
        Assert.Null(Plan([Mirror("pvc-9", deleting: true)], [Csi("pvc-9")]).For("pvc-9"));
        // Gone: it is created again.
        Assert.IsType<CreateMirror>(Assert.Single(Plan([], [Csi("pvc-9")]).For("pvc-9")!.Steps));
    }

    [Fact]
    public void A_mirror_follows_the_master_size_and_its_status_reports_the_master()
    {
        var p = Plan([Mirror("pvc-9", size: "10Gi")], [Csi("pvc-9", size: 15 * Gi, lease: "node-a2")]).For("pvc-9")!;
        Assert.Equal("15Gi", Assert.IsType<UpdateMirrorSpec>(Assert.Single(p.Steps)).Spec.Size);
        Assert.Equal(VolumeStatusBuilder.Attached, p.Status!.State);
        Assert.Equal("Mirrored", Condition(p.Status, Conditions.Synced).Reason);
    }

    [Fact]
    public void A_mirror_is_never_given_a_finalizer_nor_grown_from_its_spec()
    {
        var p = Plan([Mirror("pvc-9", size: "50Gi")], [Csi("pvc-9", size: 10 * Gi)]).For("pvc-9")!;
        Assert.All(p.Steps, s => Assert.IsNotType<ResizeMasterVolume>(s));
        Assert.All(p.Steps, s => Assert.IsNotType<AddFinalizer>(s));
        Assert.Equal("10Gi", Assert.IsType<UpdateMirrorSpec>(Assert.Single(p.Steps)).Spec.Size);
    }

    [Fact]
    public void A_name_taken_by_another_clusters_volume_is_reported_on_the_cluster()
    {
        var plan = Plan([], [Csi("shared")], null, "shared");
        Assert.Null(plan.For("shared"));
        Assert.Contains(plan.ClusterEvents, e => e is { Type: "Warning", Reason: "MirrorNameTaken" });
    }

    [Fact]
    public void Without_an_answer_from_the_master_no_mirror_is_deleted()
    {
        var plan = Plan([Mirror("pvc-9")], master: null);
        Assert.Empty(plan.For("pvc-9")!.Steps);
        Assert.False(plan.RetrySoon);
    }

    [Fact]
    public void Volumes_of_a_missing_cluster_say_so_and_a_deleting_one_is_let_go()
    {
        var plan = VolumePlanner.PlanWithoutCluster("prod", [User("waiting"), User("leaving", finalizer: true, deleting: true), Mirror("pvc-9")]);

        var waiting = plan.For("waiting")!;
        Assert.Empty(waiting.Steps);
        Assert.Equal(VolumeStatusBuilder.Creating, waiting.Status!.State);
        Assert.Equal("ClusterNotFound", Condition(waiting.Status, Conditions.Ready).Reason);
        Assert.IsType<RemoveFinalizer>(Assert.Single(plan.For("leaving")!.Steps));
        Assert.Null(plan.For("pvc-9"));
        Assert.DoesNotContain(plan.Volumes.SelectMany(v => v.Steps), s => s is CreateMasterVolume or DeleteMasterVolume);
    }

    // ---------- master failures ----------

    [Fact]
    public void A_refused_create_fails_the_volume_and_a_transient_one_leaves_it_creating()
    {
        var cr = User();
        var step = new CreateMasterVolume(new MasterVolumeRequest("data", 4096, 3, new Dictionary<string, string>()));
        var refused = VolumeStatusBuilder.MasterFailed(cr, null, step, new MasterVolumeException(MasterFailure.Refused, "create volume 'data': InvalidArgument"));
        Assert.Equal(VolumeStatusBuilder.Failed, refused.State);
        Assert.Equal("MasterError", Condition(refused, Conditions.Ready).Reason);
        var transient = VolumeStatusBuilder.MasterFailed(cr, null, step, new MasterVolumeException(MasterFailure.Transient, "Unavailable"));
        Assert.Equal(VolumeStatusBuilder.Creating, transient.State);
        var delete = VolumeStatusBuilder.MasterFailed(User(deleting: true), null, new DeleteMasterVolume(), new MasterVolumeException(MasterFailure.Transient, "attached"));
        Assert.Equal(VolumeStatusBuilder.Deleting, delete.State);
    }
}
