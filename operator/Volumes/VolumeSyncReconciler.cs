using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Volumes;

public sealed class VolumeSyncOptions
{
    /// <summary>Namespace to watch; null watches every namespace.</summary>
    public string? Namespace { get; init; }
    public int Workers { get; init; } = 1;
    /// <summary>How often every StorageCluster's volumes are compared with its master (CSI volumes appear there without any Kubernetes event).</summary>
    public TimeSpan ResyncPeriod { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>Next look when something waits on the master or on a detach.</summary>
    public TimeSpan RetrySoon { get; init; } = TimeSpan.FromSeconds(10);
    public int MaxRetries { get; init; } = 12;
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan RetryMaxDelay { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// Syncs one StorageCluster's volumes: read the cluster, its Volume objects and the master's volumes,
/// plan (<see cref="VolumePlanner"/>), then carry the plan out. Kubernetes API errors propagate (the
/// controller retries the whole sync); a master refusal is written to that volume's status.
/// </summary>
public sealed class VolumeSyncReconciler(
    KubeApi api,
    EventRecorder events,
    IMasterVolumes masters,
    VolumeSyncOptions options,
    ILogger<VolumeSyncReconciler> logger)
{
    public async Task<ReconcileResult> SyncAsync(string ns, string name, CancellationToken ct)
    {
        var cluster = await api.GetAsync<StorageCluster>(ResourceKind.StorageClusters, ns, name, ct);
        var all = await api.ListAsync<Volume, VolumeList>(ResourceKind.Volumes, ns, null, ct);
        var mine = all.Where(v => v.Spec?.Cluster == name).ToList();
        if (cluster is null)
        {
            // Only user Volumes are planned here, and never a master call.
            var orphans = VolumePlanner.PlanWithoutCluster(name, mine);
            var placeholder = new StorageCluster { Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns } };
            foreach (var volume in orphans.Volumes)
            {
                await ApplyAsync(placeholder, volume, ct);
            }
            return ReconcileResult.NotFound;
        }
        var elsewhere = all.Where(v => v.Spec?.Cluster != name).Select(v => v.Metadata.Name).ToHashSet(StringComparer.Ordinal);
        var master = await masters.ListAsync(cluster, ct);
        var plan = VolumePlanner.Plan(new VolumeSyncInput(cluster, mine, elsewhere, master));

        var retry = plan.RetrySoon;
        foreach (var volume in plan.Volumes)
        {
            retry |= await ApplyAsync(cluster, volume, ct);
        }
        foreach (var e in plan.ClusterEvents)
        {
            await events.RecordAsync(cluster, e.Type, e.Reason, e.Message, ct);
        }
        var reason = master is null ? "MasterUnreachable" : "VolumesSynced";
        return retry ? ReconcileResult.Requeue(reason, options.RetrySoon) : ReconcileResult.Done(reason);
    }

    /// <summary>Carries out one volume's plan; true when a master call failed and the volume should be looked at again soon.</summary>
    private async Task<bool> ApplyAsync(StorageCluster cluster, VolumePlan plan, CancellationToken ct)
    {
        var ns = cluster.Metadata.NamespaceProperty;
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["Volume"] = $"{ns}/{plan.Name}" });
        var current = plan.Current;
        foreach (var step in plan.Steps)
        {
            try
            {
                current = await ApplyStepAsync(cluster, plan.Name, current, step, ct);
            }
            catch (MasterVolumeException e)
            {
                // The steps after a failed master call do not run: in particular the finalizer stays
                // until the master volume is really gone.
                logger.LogWarning("Volume {Namespace}/{Name}: {Step} failed ({Failure}): {Message}", ns, plan.Name, step.Describe(), e.Failure, e.Message);
                if (current is not null)
                {
                    var status = VolumeStatusBuilder.IfChanged(current.Status, VolumeStatusBuilder.MasterFailed(current, plan.Status, step, e));
                    await WriteStatusAsync(current, status, ct);
                    await events.RecordAsync(current, "Warning", "MasterError", e.Message, ct);
                }
                return true;
            }
            logger.LogInformation("Volume {Namespace}/{Name}: {Step}", ns, plan.Name, step.Describe());
        }
        if (current is not null)
        {
            current = await WriteStatusAsync(current, plan.Status, ct);
        }
        var target = current ?? plan.Current ?? new Volume { Metadata = new V1ObjectMeta { Name = plan.Name, NamespaceProperty = ns } };
        foreach (var e in plan.Events)
        {
            await events.RecordAsync(target, e.Type, e.Reason, e.Message, ct);
        }
        return false;
    }

    /// <summary>One step; returns the Volume object as it now is (null once it is gone or going).</summary>
    private async Task<Volume?> ApplyStepAsync(StorageCluster cluster, string name, Volume? current, VolumeStep step, CancellationToken ct)
    {
        switch (step)
        {
            case AddFinalizer:
                current!.Metadata.Finalizers = [.. current.Metadata.Finalizers ?? [], VolumeNames.Finalizer];
                return await api.ReplaceAsync(ResourceKind.Volumes, current, ct);
            case Adopt:
                current!.Metadata.Annotations ??= new Dictionary<string, string>();
                current.Metadata.Annotations[VolumeNames.AdoptedAnnotation] = "true";
                if (!(current.Metadata.Finalizers?.Contains(VolumeNames.Finalizer) ?? false))
                {
                    current.Metadata.Finalizers = [.. current.Metadata.Finalizers ?? [], VolumeNames.Finalizer];
                }
                return await api.ReplaceAsync(ResourceKind.Volumes, current, ct);
            case RemoveFinalizer:
                current!.Metadata.Finalizers = current.Metadata.Finalizers.Where(f => f != VolumeNames.Finalizer).ToList();
                await api.ReplaceAsync(ResourceKind.Volumes, current, ct);
                return null;
            case CreateMasterVolume create:
                await masters.CreateAsync(cluster, create.Request, ct);
                return current;
            case ResizeMasterVolume resize:
                await masters.ResizeAsync(cluster, name, resize.ToBytes, ct);
                return current;
            case DeleteMasterVolume:
                await masters.DeleteAsync(cluster, name, ct);
                return current;
            case CreateMirror mirror:
                // Status is a subresource: the API server drops it on create; it is written next.
                mirror.Mirror.Status = null;
                return await api.CreateAsync(ResourceKind.Volumes, mirror.Mirror, ct);
            case UpdateMirrorSpec update:
                current!.Spec = update.Spec;
                return await api.ReplaceAsync(ResourceKind.Volumes, current, ct);
            case DeleteMirror:
                await api.DeleteAsync(ResourceKind.Volumes, cluster.Metadata.NamespaceProperty, name, ct);
                return null;
            default:
                throw new InvalidOperationException($"unknown volume step {step}");
        }
    }

    /// <summary>Writes the status when there is one to write (the planner already left out unchanged ones); a conflict propagates.</summary>
    private async Task<Volume> WriteStatusAsync(Volume current, VolumeStatus? status, CancellationToken ct)
    {
        if (status is null)
        {
            return current;
        }
        // The status describes the spec as it is after the steps (a mirror's rewritten spec has a new generation).
        foreach (var c in status.Conditions)
        {
            c.ObservedGeneration = current.Metadata.Generation;
        }
        current.Status = status;
        return await api.ReplaceStatusAsync(current, ct);
    }
}
