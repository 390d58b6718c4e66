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
    private readonly ConcurrentDictionary<string, (long? Generation, bool Deleting, string? Cluster, string? Origin)> _seen = new();

    public WorkQueue Queue => _queue;

    public async Task RunAsync(CancellationToken ct)
    {
        var tasks = new List<Task> { Watcher().RunAsync(ct), ResyncAsync(ct) };
        tasks.AddRange(Enumerable.Range(0, Math.Max(1, options.Workers)).Select(_ => WorkerAsync(ct)));
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

    private async Task WorkerAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            string key;
            try
            {
                key = await _queue.TakeAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                await ProcessAsync(key, ct);
            }
            finally
            {
                _queue.Done(key);
            }
        }
    }

    /// <summary>The exception guard: every outcome is logged, errors are recorded as Events and retried.</summary>
    internal async Task ProcessAsync(string key, CancellationToken ct)
    {
        var slash = key.IndexOf('/');
        var (ns, name) = (key[..slash], key[(slash + 1)..]);
        using var scope = _logger.BeginScope(new Dictionary<string, object> { ["StorageCluster"] = key });
        var clock = Stopwatch.StartNew();
        try
        {
            var result = await reconciler.SyncAsync(ns, name, ct);
            _queue.Forget(key);
            Syncs.WithLabels(result.Reason).Inc();
            _logger.LogDebug("Volumes of {Key}: {Result} in {Ms} ms", key, result.Reason, clock.ElapsedMilliseconds);
            if (result.RequeueAfter is { } after)
            {
                _queue.AddAfter(key, after);
            }
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // Stopping (leadership lost or shutdown): a cancelled call is not a failure.
        }
        catch (Exception e)
        {
            var kind = KubeErrors.Classify(e);
            Syncs.WithLabels($"Error{kind}").Inc();
            var failures = _queue.Failures(key) + 1;
            var cluster = new StorageCluster { Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns } };
            var message = $"{kind}: {e.Message}";
            message = message.Length > 1000 ? message[..1000] : message;
            if (failures > options.MaxRetries)
            {
                _queue.Forget(key);
                _logger.LogError(e, "Volume sync of {Key} failed {Failures} times ({Class}); giving up until the next change or resync", key, failures, kind);
                await events.RecordAsync(cluster, "Warning", "VolumeSyncGaveUp", message, ct);
                return;
            }
            var delay = _queue.AddRateLimited(key);
            if (kind == KubeErrorClass.Conflict)
            {
                _logger.LogInformation("Volume sync of {Key} hit a conflict; retrying in {Delay}", key, delay);
                return;
            }
            _logger.LogWarning(e, "Volume sync of {Key} failed ({Class}, attempt {Failures}); retrying in {Delay}", key, kind, failures, delay);
            await events.RecordAsync(cluster, "Warning", "VolumeSyncFailed", message, ct);
        }
        finally
        {
            SyncSeconds.Observe(clock.Elapsed.TotalSeconds);
        }
    }
}
