using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Operator.Tls;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Reconcile;

public sealed class ReconcilerOptions
{
    public TimeSpan DeletionBlockedRetry { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan NotReadyRetry { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan RolloutRetry { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How often an upgrade of volume hosts waiting for nodes to be drained looks again.</summary>
    public TimeSpan VolumeHostRetry { get; init; } = TimeSpan.FromSeconds(30);
    public string CsiClusterRolePrefix { get; init; } = Names.DefaultCsiClusterRolePrefix;
    /// <summary>Where the CSI controller sidecars keep their Leases (the chart's namespaced Role is there); null = each cluster's namespace.</summary>
    public string? CsiLeaseNamespace { get; init; }
    /// <summary>The operator's namespace and pod labels, admitted by the NetworkPolicies; null = <see cref="CsiLeaseNamespace"/> and the chart's labels.</summary>
    public OperatorPeer? Operator { get; init; }
    /// <summary>The clock certificates are issued and judged by (tests move it).</summary>
    public Func<DateTimeOffset> Now { get; init; } = () => DateTimeOffset.UtcNow;
}

/// <summary>
/// Reconciles one StorageCluster in a fixed order: get (missing = done) → finalizer → mark
/// Progressing → dependencies → deletion branch → validate → create/update → rollout → status.
/// Exceptions propagate to the controller, which classifies them and requeues with backoff.
/// </summary>
public sealed class StorageClusterReconciler(
    KubeApi api,
    EventRecorder events,
    IMasterStatusSource masters,
    ReconcilerOptions options,
    ILogger<StorageClusterReconciler> logger,
    OperatorCertificates? operatorCertificates = null)
{
    public async Task<ReconcileResult> ReconcileAsync(string ns, string name, CancellationToken ct)
    {
        // 1. get
        var cluster = await api.GetAsync<StorageCluster>(ResourceKind.StorageClusters, ns, name, ct);
        if (cluster is null)
        {
            return ReconcileResult.NotFound;
        }
        var deleting = cluster.Metadata.DeletionTimestamp is not null;

        // 2. finalizer
        if (!deleting && !(cluster.Metadata.Finalizers?.Contains(Names.Finalizer) ?? false))
        {
            cluster.Metadata.Finalizers = [.. cluster.Metadata.Finalizers ?? [], Names.Finalizer];
            await api.ReplaceAsync(ResourceKind.StorageClusters, cluster, ct);
            return ReconcileResult.FinalizerAdded;
        }

        // 3. mark Progressing when the spec is new to us
        if (!deleting && cluster.Status?.ObservedGeneration != cluster.Metadata.Generation
            && !Conditions.IsTrue(cluster.Status?.Conditions, Conditions.Progressing))
        {
            var status = cluster.Status is null ? new StorageClusterStatus() : CloneStatus(cluster.Status);
            status.Phase ??= "Creating";
            Conditions.Set(status.Conditions, Conditions.Progressing, true, "SpecChanged",
                $"reconciling generation {cluster.Metadata.Generation}", cluster.Metadata.Generation);
            cluster = await WriteStatusAsync(cluster, status, ct);
        }

        // 4. dependencies
        var nodes = await api.ListAsync<V1Node, V1NodeList>(ResourceKind.Node, null, null, ct);
        var snapshotCrd = await api.GetAsync<V1CustomResourceDefinition>(ResourceKind.Crd, null, VolumeSnapshotClass.CrdName, ct) is not null;
        var certManagerCrd = !deleting && cluster.Spec.Tls.Enabled
            && await api.GetAsync<V1CustomResourceDefinition>(ResourceKind.Crd, null, CertManagerCertificate.CrdName, ct) is not null;

        // 5. deletion
        if (deleting)
        {
            return await DeleteAsync(cluster, ct);
        }

        // 6. validate
        var errors = SpecValidator.Validate(cluster.Spec);
        if (errors.Count > 0)
        {
            var message = string.Join("; ", errors);
            var status = CloneStatus(cluster.Status ?? new StorageClusterStatus());
            status.Phase = "Failed";
            status.ObservedGeneration = cluster.Metadata.Generation;
            Conditions.Set(status.Conditions, Conditions.Ready, false, "InvalidSpec", message, cluster.Metadata.Generation);
            Conditions.Set(status.Conditions, Conditions.Progressing, false, "InvalidSpec", message, cluster.Metadata.Generation);
            await WriteStatusAsync(cluster, status, ct);
            await events.RecordAsync(cluster, "Warning", "InvalidSpec", message, ct);
            return ReconcileResult.InvalidSpec;
        }

        // 7. create / update
        var operatorCa = certManagerCrd && cluster.Spec.Tls.Issuer == "auto"
            && await api.GetAsync<V1Secret>(ResourceKind.Secret, ns, Names.TlsCaSecret(cluster), ct) is { } caSecret
            && TlsSecretPlanner.Text(caSecret, TlsSecretPlanner.CaKeyKey) is not null;
        var env = new ClusterEnvironment(nodes.ToList(), snapshotCrd, options.CsiClusterRolePrefix, options.CsiLeaseNamespace,
            certManagerCrd, options.Operator, operatorCa);
        var issuer = env.Issuer(cluster);
        var changed = new List<string>();
        await IssueCertificatesAsync(cluster, issuer, changed, ct);
        var desired = DesiredState.Build(cluster, env);
        foreach (var d in desired)
        {
            try
            {
                var outcome = await api.ApplyAsync(d, ct);
                if (outcome != ApplyOutcome.Unchanged)
                {
                    changed.Add($"{outcome.ToString().ToLowerInvariant()} {d}");
                }
            }
            catch (ForeignObjectException e)
            {
                await events.RecordAsync(cluster, "Warning", "NameTaken", e.Message, ct);
            }
        }
        await PruneDaemonSetsAsync(cluster, desired, ct);
        await PruneNetworkPoliciesAsync(cluster, desired, ct);
        await LoadOperatorCertificateAsync(cluster, issuer, ct);
        if (snapshotCrd && !desired.Any(d => d.Kind == ResourceKind.SnapshotClass))
        {
            // Made by an earlier version while the driver does not serve snapshots: nothing would answer it.
            await DeleteOwnedClusterScopedAsync(ResourceKind.SnapshotClass, $"{Names.OwnerLabel}={Names.OwnerValue(cluster)}", ct);
        }
        if (changed.Count > 0)
        {
            await events.RecordAsync(cluster, "Normal", "Reconciled", string.Join(", ", changed), ct);
        }

        // 8. chunk-server rolling upgrade
        var master = await masters.GetAsync(cluster, ct);
        var chunkSets = DesiredState.ChunkServerDaemonSets(desired).ToList();
        var pods = await api.ListAsync<V1Pod, V1PodList>(ResourceKind.Pod, ns,
            $"{Names.ClusterLabel}={name},{Names.ComponentLabel}={ChunkServerBuilder.Component}", ct);
        var racks = RackGrouping.Group(env.Nodes, cluster.Spec.ChunkServers.NodeSelector, cluster.Spec.ChunkServers.RackLabel);
        var expected = racks.NodesByRack.ToDictionary(kv => Names.DnsLabel(kv.Key), kv => kv.Value.Count);
        var rollout = RolloutPlanner.Next(chunkSets, pods.ToList(), master, expected);
        if (rollout.Action == RolloutAction.Replace)
        {
            await api.DeleteAsync(ResourceKind.Pod, ns, rollout.Pod!, ct);
            await events.RecordAsync(cluster, "Normal", "UpgradingChunkServer",
                $"replacing pod {rollout.Pod} ({rollout.Reason}); every chunk is fully replicated", ct);
        }

        // 8b. master rolling upgrade: one Raft member at a time, only while the group is whole and caught up
        var masterRollout = await MasterRolloutAsync(cluster, desired, ct);

        // 8c. volume-host upgrade: one node at a time, only on a node that holds no volume
        var volumeHostRollout = await VolumeHostRolloutAsync(cluster, desired, ct);

        // 9. status
        var statefulSet = await api.GetAsync<V1StatefulSet>(ResourceKind.StatefulSet, ns, Names.Master(cluster), ct);
        var byRack = new Dictionary<string, V1DaemonSet?>();
        foreach (var rack in racks.Racks)
        {
            byRack[rack] = await api.GetAsync<V1DaemonSet>(ResourceKind.DaemonSet, ns, Names.ChunkServer(cluster, rack), ct);
        }
        var observed = new Observed(statefulSet, byRack, racks, master, rollout);
        var newStatus = StatusBuilder.Build(cluster, cluster.Status, observed);
        var wasReady = Conditions.IsTrue(cluster.Status?.Conditions, Conditions.Ready);
        var previousStatus = cluster.Status;
        await WriteStatusAsync(cluster, newStatus, ct);
        foreach (var (type, reason, message) in RedundancyEvents.Between(previousStatus, newStatus))
        {
            await events.RecordAsync(cluster, type, reason, message, ct);
        }
        var ready = Conditions.IsTrue(newStatus.Conditions, Conditions.Ready);
        if (ready && !wasReady)
        {
            await events.RecordAsync(cluster, "Normal", "ClusterReady",
                $"masters {newStatus.Masters.Summary}, chunk servers {newStatus.ChunkServers.Summary}", ct);
        }
        if (rollout.Action != RolloutAction.Done || masterRollout.Action != RolloutAction.Done)
        {
            return ReconcileResult.RollingUpgrade(options.RolloutRetry);
        }
        if (volumeHostRollout.Action != RolloutAction.Done)
        {
            return ReconcileResult.RollingUpgrade(volumeHostRollout.Action == RolloutAction.Replace ? options.RolloutRetry : options.VolumeHostRetry);
        }
        return ready ? ReconcileResult.Ready : ReconcileResult.WaitingForPods(options.NotReadyRetry);
    }

    private async Task<RolloutDecision> MasterRolloutAsync(StorageCluster cluster, IReadOnlyList<DesiredObject> desired, CancellationToken ct)
    {
        var ns = cluster.Metadata.NamespaceProperty;
        var statefulSet = desired.Select(d => d.Object).OfType<V1StatefulSet>().Single();
        var pods = await api.ListAsync<V1Pod, V1PodList>(ResourceKind.Pod, ns,
            $"{Names.ClusterLabel}={cluster.Metadata.Name},{Names.ComponentLabel}={MasterBuilder.Component}", ct);
        // The masters are asked only when a pod could be replaced now.
        var members = MasterRolloutPlanner.NeedsMembers(statefulSet, pods.ToList()) ? await masters.GetMembersAsync(cluster, ct) : [];
        var decision = MasterRolloutPlanner.Next(statefulSet, pods.ToList(), members);
        if (decision.Action == RolloutAction.Replace)
        {
            await api.DeleteAsync(ResourceKind.Pod, ns, decision.Pod!, ct);
            await events.RecordAsync(cluster, "Normal", "UpgradingMaster",
                $"replacing pod {decision.Pod} ({decision.Reason}); every master answers and is caught up", ct);
        }
        else if (decision.Action == RolloutAction.Wait)
        {
            logger.LogInformation("Master upgrade of {Namespace}/{Name} waits: {Reason}", ns, cluster.Metadata.Name, decision.Reason);
        }
        return decision;
    }

    private async Task<RolloutDecision> VolumeHostRolloutAsync(StorageCluster cluster, IReadOnlyList<DesiredObject> desired, CancellationToken ct)
    {
        var ns = cluster.Metadata.NamespaceProperty;
        var daemonSet = DesiredState.VolumeHostDaemonSet(desired);
        var observed = await api.GetAsync<V1DaemonSet>(ResourceKind.DaemonSet, ns, daemonSet.Metadata.Name, ct);
        var pods = await api.ListAsync<V1Pod, V1PodList>(ResourceKind.Pod, ns,
            $"{Names.ClusterLabel}={cluster.Metadata.Name},{Names.ComponentLabel}={VolumeHostBuilder.Component}", ct);
        var want = daemonSet.Spec.Template.Metadata.Annotations[Names.TemplateHashAnnotation];
        if (pods.All(p => Names.Value(p.Metadata.Annotations, Names.TemplateHashAnnotation) == want))
        {
            return new RolloutDecision(RolloutAction.Done, "all volume hosts run the current template");
        }
        // Asked only when something is outdated.
        var attachments = await api.ListAsync<V1VolumeAttachment, V1VolumeAttachmentList>(ResourceKind.VolumeAttachment, null, null, ct);
        var decision = VolumeHostRolloutPlanner.Next(daemonSet, observed, pods.ToList(), attachments.ToList());
        if (decision.Action == RolloutAction.Replace)
        {
            await api.DeleteAsync(ResourceKind.Pod, ns, decision.Pod!, ct);
            await events.RecordAsync(cluster, "Normal", "UpgradingVolumeHost", $"replacing pod {decision.Pod} ({decision.Reason})", ct);
        }
        else if (decision.Action == RolloutAction.Wait)
        {
            logger.LogInformation("Volume-host upgrade of {Namespace}/{Name} waits: {Reason}", ns, cluster.Metadata.Name, decision.Reason);
        }
        return decision;
    }

    /// <summary>
    /// The operator's own certificates (no cert-manager): creates the CA and each role's Secret when
    /// missing, and renews a certificate in place (same Secret, new data) when a third of its lifetime
    /// is left. A CA Secret that is there but unusable is reported, never overwritten.
    /// </summary>
    private async Task IssueCertificatesAsync(StorageCluster cluster, TlsIssuer issuer, List<string> changed, CancellationToken ct)
    {
        var ns = cluster.Metadata.NamespaceProperty;
        if (issuer == TlsIssuer.CertManagerMissing)
        {
            await events.RecordAsync(cluster, "Warning", "CertManagerMissing",
                $"spec.tls.issuer is cert-manager but {CertManagerCertificate.CrdName} is not installed: no certificates are issued", ct);
            return;
        }
        if (issuer != TlsIssuer.Operator)
        {
            return;
        }
        var ca = await api.GetAsync<V1Secret>(ResourceKind.Secret, ns, Names.TlsCaSecret(cluster), ct);
        var existing = new Dictionary<string, V1Secret>();
        foreach (var role in Core.Security.ComponentRoles.All)
        {
            if (await api.GetAsync<V1Secret>(ResourceKind.Secret, ns, Names.TlsSecret(cluster, role), ct) is { } secret)
            {
                existing[role] = secret;
            }
        }
        IReadOnlyList<PlannedSecret> plan;
        try
        {
            plan = TlsSecretPlanner.Plan(cluster, ca, existing, options.Now());
        }
        catch (InvalidOperationException e)
        {
            await events.RecordAsync(cluster, "Warning", "TlsCaInvalid", e.Message, ct);
            return;
        }
        foreach (var planned in plan)
        {
            if (planned.IsNew)
            {
                await api.CreateAsync(ResourceKind.Secret, planned.Secret, ct);
            }
            else
            {
                await api.ReplaceAsync(ResourceKind.Secret, planned.Secret, ct);
            }
            logger.LogInformation("Secret {Namespace}/{Name}: {Reason}", ns, planned.Secret.Metadata.Name, planned.Reason);
            changed.Add($"secret {planned.Secret.Metadata.Name} ({planned.Reason})");
        }
    }

    /// <summary>Hands the operator's own certificate Secret (whoever issued it) to its channels to the masters.</summary>
    private async Task LoadOperatorCertificateAsync(StorageCluster cluster, TlsIssuer issuer, CancellationToken ct)
    {
        if (operatorCertificates is null || issuer is TlsIssuer.None)
        {
            return;
        }
        var secret = await api.GetAsync<V1Secret>(ResourceKind.Secret, cluster.Metadata.NamespaceProperty,
            Names.TlsSecret(cluster, Core.Security.ComponentRoles.Operator), ct);
        bool loaded;
        try
        {
            loaded = secret is not null && operatorCertificates.Update(cluster, secret);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException
            or System.Security.Cryptography.CryptographicException)
        {
            // The cluster's objects are in place; only the operator's own calls to its masters lack a certificate for now.
            await events.RecordAsync(cluster, "Warning", "OperatorCertificateUnusable", $"secret {secret!.Metadata.Name}: {e.Message}", ct);
            return;
        }
        if (!loaded)
        {
            logger.LogInformation("No operator certificate for {Namespace}/{Name} yet (secret {Secret})", cluster.Metadata.NamespaceProperty,
                cluster.Metadata.Name, Names.TlsSecret(cluster, Core.Security.ComponentRoles.Operator));
        }
    }

    /// <summary>Deletes this cluster's NetworkPolicies that are no longer desired (spec.networkPolicies.enabled turned off).</summary>
    private async Task PruneNetworkPoliciesAsync(StorageCluster cluster, IReadOnlyList<DesiredObject> desired, CancellationToken ct)
    {
        var wanted = desired.Where(d => d.Kind == ResourceKind.NetworkPolicy).Select(d => d.Name).ToHashSet();
        var existing = await api.ListAsync<V1NetworkPolicy, V1NetworkPolicyList>(ResourceKind.NetworkPolicy, cluster.Metadata.NamespaceProperty,
            $"{Names.ClusterLabel}={cluster.Metadata.Name},{Names.ManagedByLabel}={Names.ManagedByValue}", ct);
        foreach (var policy in existing.Where(p => !wanted.Contains(p.Metadata.Name)))
        {
            await api.DeleteAsync(ResourceKind.NetworkPolicy, policy.Metadata.NamespaceProperty, policy.Metadata.Name, ct);
            await events.RecordAsync(cluster, "Normal", "NetworkPolicyRemoved", $"deleted networkpolicy {policy.Metadata.Name}: spec.networkPolicies.enabled is false", ct);
        }
    }

    /// <summary>
    /// Refuses to tear down while volumes of this cluster exist (their data lives on the chunk
    /// servers); otherwise removes the cluster-scoped objects and then the finalizer. Namespaced
    /// children go with the cluster through their owner references.
    /// </summary>
    private async Task<ReconcileResult> DeleteAsync(StorageCluster cluster, CancellationToken ct)
    {
        var ns = cluster.Metadata.NamespaceProperty;
        if (!(cluster.Metadata.Finalizers?.Contains(Names.Finalizer) ?? false))
        {
            return ReconcileResult.Deleted;
        }
        var volumes = (await api.ListAsync<Volume, VolumeList>(ResourceKind.Volumes, ns, null, ct))
            .Where(v => v.Spec.Cluster == cluster.Metadata.Name)
            .Select(v => v.Metadata.Name)
            .Order(StringComparer.Ordinal)
            .ToList();
        if (volumes.Count > 0)
        {
            var message = $"{volumes.Count} volumes still exist ({string.Join(", ", volumes.Take(10))}); delete them first";
            var status = CloneStatus(cluster.Status ?? new StorageClusterStatus());
            status.Phase = "Deleting";
            Conditions.Set(status.Conditions, Conditions.Progressing, false, "DeletionBlocked", message, cluster.Metadata.Generation);
            await WriteStatusAsync(cluster, status, ct);
            await events.RecordAsync(cluster, "Warning", "DeletionBlocked", message, ct);
            logger.LogInformation("Deletion of {Namespace}/{Name} blocked: {Message}", ns, cluster.Metadata.Name, message);
            return ReconcileResult.DeletionBlocked(options.DeletionBlockedRetry);
        }
        var owner = $"{Names.OwnerLabel}={Names.OwnerValue(cluster)}";
        foreach (var kind in new[] { ResourceKind.StorageClass, ResourceKind.CsiDriver, ResourceKind.ClusterRoleBinding })
        {
            await DeleteOwnedClusterScopedAsync(kind, owner, ct);
        }
        if (await api.GetAsync<V1CustomResourceDefinition>(ResourceKind.Crd, null, VolumeSnapshotClass.CrdName, ct) is not null)
        {
            await DeleteOwnedClusterScopedAsync(ResourceKind.SnapshotClass, owner, ct);
        }
        // The sidecars' leader-election RoleBinding may live outside the cluster's namespace (no owner reference there).
        var leaseNamespace = options.CsiLeaseNamespace ?? ns;
        foreach (var binding in await api.ListAsync<V1RoleBinding, V1RoleBindingList>(ResourceKind.RoleBinding, leaseNamespace, owner, ct))
        {
            await api.DeleteAsync(ResourceKind.RoleBinding, leaseNamespace, binding.Metadata.Name, ct);
        }
        cluster.Metadata.Finalizers = cluster.Metadata.Finalizers.Where(f => f != Names.Finalizer).ToList();
        await api.ReplaceAsync(ResourceKind.StorageClusters, cluster, ct);
        logger.LogInformation("Finalized {Namespace}/{Name}", ns, cluster.Metadata.Name);
        return ReconcileResult.Deleted;
    }

    private async Task DeleteOwnedClusterScopedAsync(ResourceKind kind, string ownerSelector, CancellationToken ct)
    {
        var items = kind.ClrType == typeof(V1StorageClass)
            ? (await api.ListAsync<V1StorageClass, V1StorageClassList>(kind, null, ownerSelector, ct)).Select(i => i.Metadata.Name)
            : kind.ClrType == typeof(V1CSIDriver)
                ? (await api.ListAsync<V1CSIDriver, V1CSIDriverList>(kind, null, ownerSelector, ct)).Select(i => i.Metadata.Name)
                : kind.ClrType == typeof(V1ClusterRoleBinding)
                    ? (await api.ListAsync<V1ClusterRoleBinding, V1ClusterRoleBindingList>(kind, null, ownerSelector, ct)).Select(i => i.Metadata.Name)
                    : (await api.ListAsync<VolumeSnapshotClass, SnapshotClassList>(kind, null, ownerSelector, ct)).Select(i => i.Metadata.Name);
        foreach (var item in items.ToList())
        {
            await api.DeleteAsync(kind, null, item, ct);
        }
    }

    /// <summary>
    /// Deletes the DaemonSets this operator made that are no longer desired: chunk servers of racks
    /// without storage nodes, and the per-rack node plugin DaemonSets of earlier versions (replaced
    /// by one for all nodes, created before these are deleted).
    /// </summary>
    private async Task PruneDaemonSetsAsync(StorageCluster cluster, IReadOnlyList<DesiredObject> desired, CancellationToken ct)
    {
        var wanted = desired.Where(d => d.Kind == ResourceKind.DaemonSet).Select(d => d.Name).ToHashSet();
        var existing = await api.ListAsync<V1DaemonSet, V1DaemonSetList>(ResourceKind.DaemonSet, cluster.Metadata.NamespaceProperty,
            $"{Names.ClusterLabel}={cluster.Metadata.Name},{Names.ManagedByLabel}={Names.ManagedByValue}", ct);
        foreach (var ds in existing.Where(ds => !wanted.Contains(ds.Metadata.Name)))
        {
            await api.DeleteAsync(ResourceKind.DaemonSet, ds.Metadata.NamespaceProperty, ds.Metadata.Name, ct);
            var nodePlugin = Names.Value(ds.Metadata.Labels, Names.ComponentLabel) == CsiBuilder.NodeComponent;
            await events.RecordAsync(cluster, "Normal", nodePlugin ? "NodePluginReplaced" : "RackRemoved", nodePlugin
                ? $"deleted daemonset {ds.Metadata.Name}: the node plugin runs on every node from daemonset {Names.CsiNode(cluster)}"
                : $"deleted daemonset {ds.Metadata.Name}: no storage node in its rack any more", ct);
        }
    }

    /// <summary>Writes the status only when it differs from what the object already says; a conflict propagates (requeue).</summary>
    private async Task<StorageCluster> WriteStatusAsync(StorageCluster cluster, StorageClusterStatus status, CancellationToken ct)
    {
        if (cluster.Status is not null && KubernetesJson.Serialize(cluster.Status) == KubernetesJson.Serialize(status))
        {
            return cluster;
        }
        cluster.Status = status;
        return await api.ReplaceStatusAsync(cluster, ct);
    }

    private static StorageClusterStatus CloneStatus(StorageClusterStatus s) =>
        KubernetesJson.Deserialize<StorageClusterStatus>(KubernetesJson.Serialize(s));
}
