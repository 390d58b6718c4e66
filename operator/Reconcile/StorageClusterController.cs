using System.Collections.Concurrent;
using System.Diagnostics;
using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Operator.Reconcile;

public sealed class ControllerOptions
{
    /// <summary>Namespace to watch; null watches every namespace.</summary>
    public string? Namespace { get; init; }
    public int Workers { get; init; } = 2;
    /// <summary>Failed attempts after which a key is dropped until the next event or resync.</summary>
    public int MaxRetries { get; init; } = 12;
    public TimeSpan ResyncPeriod { get; init; } = TimeSpan.FromMinutes(1);
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan RetryMaxDelay { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// Feeds StorageCluster keys into a rate-limited work queue from watches (clusters, their
/// volumes, node label changes) and a periodic resync, and runs the reconciler on them.
/// Every reconcile ends in a log line; errors become Events and are retried with backoff up to a cap.
/// </summary>
public sealed class StorageClusterController(
    IKubernetes client,
    StorageClusterReconciler reconciler,
    EventRecorder events,
    ControllerOptions options,
    ILoggerFactory loggerFactory)
{
    private static readonly Counter Reconciles = Metrics.CreateCounter("feitian_operator_reconciles_total", "Reconciles by result.", "result");
    private static readonly Histogram ReconcileSeconds = Metrics.CreateHistogram("feitian_operator_reconcile_seconds", "Reconcile duration.");
    private static readonly Gauge QueueDepth = Metrics.CreateGauge("feitian_operator_queue_depth", "Keys waiting in the work queue.");

    private readonly ILogger _logger = loggerFactory.CreateLogger<StorageClusterController>();
    private readonly WorkQueue _queue = new(options.RetryBaseDelay, options.RetryMaxDelay);
    private QueueWorker CreateWorker() => new(_queue, reconciler.ReconcileAsync,
        new QueueWork("Reconcile", "Reconcile", Reconciles, ReconcileSeconds, LogLevel.Information), options.MaxRetries, events, _logger,
        () => QueueDepth.Set(_queue.Count));
    private readonly ConcurrentDictionary<string, (long? Generation, DateTime? Deleting)> _seen = new();
    private readonly ConcurrentDictionary<string, string> _nodeLabels = new();

    public WorkQueue Queue => _queue;

    public async Task RunAsync(CancellationToken ct)
    {
        var tasks = new List<Task>
        {
            ClusterWatcher().RunAsync(ct),
            VolumeWatcher().RunAsync(ct),
            NodeWatcher().RunAsync(ct),
            ResyncAsync(ct),
        };
        tasks.AddRange(Enumerable.Range(0, options.Workers).Select(_ => CreateWorker().RunAsync(ct)));
        _logger.LogInformation("Controller started: namespace {Namespace}, {Workers} workers", options.Namespace ?? "(all)", options.Workers);
        await Task.WhenAll(tasks);
    }

    private ResourceWatcher<StorageCluster, StorageClusterList> ClusterWatcher() => new(
        CustomSource<StorageCluster, StorageClusterList>("storageclusters", StorageCluster.Plural),
        (type, c) =>
        {
            var key = Key(c.Metadata);
            if (type == WatchEventType.Deleted)
            {
                _seen.TryRemove(key, out _);
                return;
            }
            var now = (c.Metadata.Generation, c.Metadata.DeletionTimestamp);
            // Status-only updates (ours) do not change the generation: skip them.
            if (type == WatchEventType.Modified && _seen.TryGetValue(key, out var before) && before == now)
            {
                return;
            }
            _seen[key] = now;
            _queue.Add(key);
        },
        loggerFactory.CreateLogger("Watch.StorageCluster"));

    private ResourceWatcher<Volume, VolumeList> VolumeWatcher() => new(
        CustomSource<Volume, VolumeList>("volumes", Volume.Plural),
        (type, v) =>
        {
            if (type is WatchEventType.Added or WatchEventType.Deleted && !string.IsNullOrEmpty(v.Spec?.Cluster))
            {
                _queue.Add($"{v.Metadata.NamespaceProperty}/{v.Spec.Cluster}");
            }
        },
        loggerFactory.CreateLogger("Watch.Volume"));

    private ResourceWatcher<V1Node, V1NodeList> NodeWatcher() => new(
        new WatchSource<V1Node, V1NodeList>("nodes",
            ct => client.CoreV1.ListNodeAsync(cancellationToken: ct),
            (rv, timeout, ct) => client.CoreV1.ListNodeWithHttpMessagesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                timeoutSeconds: timeout, watch: true, cancellationToken: ct)),
        (type, node) =>
        {
            // Only label changes (racks, selection) matter; node status heartbeats do not.
            var labels = node.Metadata.Labels is null ? "" : string.Join(",", node.Metadata.Labels.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"));
            bool changed;
            if (type == WatchEventType.Deleted)
            {
                changed = _nodeLabels.TryRemove(node.Metadata.Name, out _);
            }
            else
            {
                changed = !_nodeLabels.TryGetValue(node.Metadata.Name, out var old) || old != labels;
                _nodeLabels[node.Metadata.Name] = labels;
            }
            if (changed)
            {
                EnqueueAll();
            }
        },
        loggerFactory.CreateLogger("Watch.Node"));

    private WatchSource<T, TList> CustomSource<T, TList>(string name, string plural)
        where T : IKubernetesObject<V1ObjectMeta>
        where TList : IKubernetesObject<V1ListMeta>, IItems<T> =>
        options.Namespace is { } ns
            ? new WatchSource<T, TList>(name,
                async ct => (await client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<TList>(
                    StorageCluster.Group, StorageCluster.Version, ns, plural, cancellationToken: ct)).Body,
                (rv, timeout, ct) => client.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<TList>(
                    StorageCluster.Group, StorageCluster.Version, ns, plural, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: timeout, watch: true, cancellationToken: ct))
            : new WatchSource<T, TList>(name,
                async ct => (await client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<TList>(
                    StorageCluster.Group, StorageCluster.Version, plural, cancellationToken: ct)).Body,
                (rv, timeout, ct) => client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<TList>(
                    StorageCluster.Group, StorageCluster.Version, plural, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: timeout, watch: true, cancellationToken: ct));

    private void EnqueueAll()
    {
        foreach (var key in _seen.Keys)
        {
            _queue.Add(key);
        }
    }

    private async Task ResyncAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.ResyncPeriod);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                EnqueueAll();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static string Key(V1ObjectMeta m) => $"{m.NamespaceProperty}/{m.Name}";
}
