using System.Collections.Concurrent;
using System.Diagnostics;
using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Operator.Volumes;

/// <summary>
/// Feeds StorageCluster keys ("namespace/name") into a rate-limited work queue from a watch on
/// Volume objects and from a periodic resync of every StorageCluster (volumes the CSI driver creates
/// on the master raise no Kubernetes event), and runs the volume sync on them. Every sync ends in a
/// log line; errors become Events on the StorageCluster and are retried with backoff up to a cap.
/// </summary>
public sealed class VolumeController(
    IKubernetes client,
    VolumeSyncReconciler reconciler,
    EventRecorder events,
    VolumeSyncOptions options,
    ILoggerFactory loggerFactory)
{
    private static readonly Counter Syncs = Metrics.CreateCounter("feitian_operator_volume_syncs_total", "Volume syncs of a StorageCluster by result.", "result");
    private static readonly Histogram SyncSeconds = Metrics.CreateHistogram("feitian_operator_volume_sync_seconds", "Volume sync duration.");

    private readonly ILogger _logger = loggerFactory.CreateLogger<VolumeController>();
    private readonly WorkQueue _queue = new(options.RetryBaseDelay, options.RetryMaxDelay);
    private QueueWorker CreateWorker() => new(_queue, reconciler.SyncAsync,
        new QueueWork("Volume sync", "VolumeSync", Syncs, SyncSeconds, LogLevel.Debug), options.MaxRetries, events, _logger);
    private readonly ConcurrentDictionary<string, (long? Generation, bool Deleting, string? Cluster, string? Origin)> _seen = new();

    public WorkQueue Queue => _queue;

    public async Task RunAsync(CancellationToken ct)
    {
        var tasks = new List<Task> { Watcher().RunAsync(ct), ResyncAsync(ct) };
        tasks.AddRange(Enumerable.Range(0, Math.Max(1, options.Workers)).Select(_ => CreateWorker().RunAsync(ct)));
        _logger.LogInformation("Volume sync started: namespace {Namespace}, resync every {Period}", options.Namespace ?? "(all)", options.ResyncPeriod);
        await Task.WhenAll(tasks);
    }

    private ResourceWatcher<Volume, VolumeList> Watcher() => new(
        options.Namespace is { } ns
            ? new WatchSource<Volume, VolumeList>("volumes",
                async ct => (await client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<VolumeList>(
                    StorageCluster.Group, StorageCluster.Version, ns, Volume.Plural, cancellationToken: ct)).Body,
                (rv, timeout, ct) => client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<VolumeList>(
                    StorageCluster.Group, StorageCluster.Version, ns, Volume.Plural, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: timeout, watch: true, cancellationToken: ct))
            : new WatchSource<Volume, VolumeList>("volumes",
                async ct => (await client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<VolumeList>(
                    StorageCluster.Group, StorageCluster.Version, Volume.Plural, cancellationToken: ct)).Body,
                (rv, timeout, ct) => client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<VolumeList>(
                    StorageCluster.Group, StorageCluster.Version, Volume.Plural, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: timeout, watch: true, cancellationToken: ct)),
        OnVolumeEvent,
        loggerFactory.CreateLogger("Watch.Volume"));

    private void OnVolumeEvent(WatchEventType type, Volume v)
    {
        var key = $"{v.Metadata.NamespaceProperty}/{v.Metadata.Name}";
        if (string.IsNullOrEmpty(v.Spec?.Cluster))
        {
            return;
        }
        var cluster = $"{v.Metadata.NamespaceProperty}/{v.Spec.Cluster}";
        if (type == WatchEventType.Deleted)
        {
            _seen.TryRemove(key, out _);
            _queue.Add(cluster);
            return;
        }
        var now = (v.Metadata.Generation, v.Metadata.DeletionTimestamp is not null, (string?)v.Spec.Cluster,
            Desired.Names.Value(v.Metadata.Labels, VolumeNames.OriginLabel));
        // Our own status and finalizer writes leave all of these unchanged: skip them.
        if (type == WatchEventType.Modified && _seen.TryGetValue(key, out var before) && before == now)
        {
            return;
        }
        _seen[key] = now;
        _queue.Add(cluster);
    }

    /// <summary>Queues every StorageCluster now and then once a period; a failed list is retried at the next tick.</summary>
    private async Task ResyncAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.ResyncPeriod);
        try
        {
            do
            {
                try
                {
                    var clusters = options.Namespace is { } ns
                        ? (await client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<StorageClusterList>(
                            StorageCluster.Group, StorageCluster.Version, ns, StorageCluster.Plural, cancellationToken: ct)).Body
                        : (await client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<StorageClusterList>(
                            StorageCluster.Group, StorageCluster.Version, StorageCluster.Plural, cancellationToken: ct)).Body;
                    foreach (var c in clusters.Items ?? [])
                    {
                        _queue.Add($"{c.Metadata.NamespaceProperty}/{c.Metadata.Name}");
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    _logger.LogWarning(e, "Volume resync could not list StorageClusters ({Class}); trying again in {Period}", KubeErrors.Classify(e), options.ResyncPeriod);
                }
            }
            while (await timer.WaitForNextTickAsync(ct));
        }
        catch (OperationCanceledException)
        {
        }
    }
}
