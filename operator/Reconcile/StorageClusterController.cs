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
        tasks.AddRange(Enumerable.Range(0, options.Workers).Select(_ => WorkerAsync(ct)));
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

    private async Task WorkerAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            string key;
            try
            {
                key = await _queue.TakeAsync(ct);
                QueueDepth.Set(_queue.Count);
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
            var result = await reconciler.ReconcileAsync(ns, name, ct);
            _queue.Forget(key);
            Reconciles.WithLabels(result.Reason).Inc();
            _logger.LogInformation("Reconciled {Key}: {Result} in {Ms} ms{Requeue}", key, result.Reason, clock.ElapsedMilliseconds,
                result.RequeueAfter is { } d ? $", again in {d.TotalSeconds:0.#}s" : "");
            if (result.RequeueAfter is { } after)
            {
                _queue.AddAfter(key, after);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            var kind = KubeErrors.Classify(e);
            Reconciles.WithLabels($"Error{kind}").Inc();
            var failures = _queue.Failures(key) + 1;
            if (failures > options.MaxRetries)
            {
                _queue.Forget(key);
                _logger.LogError(e, "Reconcile of {Key} failed {Failures} times ({Class}); giving up until the next change or resync", key, failures, kind);
                await RecordOnClusterAsync(ns, name, "Warning", "ReconcileGaveUp", $"{kind}: {e.Message}", ct);
                return;
            }
            var delay = _queue.AddRateLimited(key);
            if (kind == KubeErrorClass.Conflict)
            {
                _logger.LogInformation("Reconcile of {Key} hit a conflict; retrying in {Delay}", key, delay);
                return;
            }
            _logger.LogWarning(e, "Reconcile of {Key} failed ({Class}, attempt {Failures}); retrying in {Delay}", key, kind, failures, delay);
            await RecordOnClusterAsync(ns, name, "Warning", "ReconcileFailed", $"{kind}: {e.Message}", ct);
        }
        finally
        {
            ReconcileSeconds.Observe(clock.Elapsed.TotalSeconds);
        }
    }

    private Task RecordOnClusterAsync(string ns, string name, string type, string reason, string message, CancellationToken ct) =>
        events.RecordAsync(new StorageCluster { Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns } }, type, reason,
            message.Length > 1000 ? message[..1000] : message, ct);

    private static string Key(V1ObjectMeta m) => $"{m.NamespaceProperty}/{m.Name}";
}
