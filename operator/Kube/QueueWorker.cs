using System.Diagnostics;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Operator.Kube;

/// <summary>What a <see cref="QueueWorker"/> calls its work in logs, metrics and Events.</summary>
/// <param name="Activity">Human name for logs ("Reconcile", "Volume sync").</param>
/// <param name="EventPrefix">Prefix of the Warning Event reasons: PREFIXFailed, PREFIXGaveUp.</param>
public sealed record QueueWork(string Activity, string EventPrefix, Counter Results, Histogram Seconds, LogLevel SuccessLevel);

/// <summary>
/// Takes StorageCluster keys ("namespace/name") from a work queue and runs one handler per key
/// at a time. The exception guard of every controller: each outcome is logged and counted;
/// errors become Warning Events on the StorageCluster and are retried with backoff, until
/// <paramref name="maxRetries"/> failures in a row drop the key until the next change or resync.
/// </summary>
public sealed class QueueWorker(
    WorkQueue queue,
    Func<string, string, CancellationToken, Task<ReconcileResult>> handle,
    QueueWork work,
    int maxRetries,
    EventRecorder events,
    ILogger logger,
    Action? taken = null)
{
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            string key;
            try
            {
                key = await queue.TakeAsync(ct);
                taken?.Invoke();
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
                queue.Done(key);
            }
        }
    }

    public async Task ProcessAsync(string key, CancellationToken ct)
    {
        var slash = key.IndexOf('/');
        var (ns, name) = (key[..slash], key[(slash + 1)..]);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["StorageCluster"] = key });
        var clock = Stopwatch.StartNew();
        try
        {
            var result = await handle(ns, name, ct);
            queue.Forget(key);
            work.Results.WithLabels(result.Reason).Inc();
            logger.Log(work.SuccessLevel, "{Activity} of {Key}: {Result} in {Ms} ms{Requeue}", work.Activity, key, result.Reason, clock.ElapsedMilliseconds,
                result.RequeueAfter is { } d ? $", again in {d.TotalSeconds:0.#}s" : "");
            if (result.RequeueAfter is { } after)
            {
                queue.AddAfter(key, after);
            }
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            // Stopping (leadership lost or shutdown): a cancelled call is not a failure.
        }
        catch (Exception e)
        {
            var kind = KubeErrors.Classify(e);
            work.Results.WithLabels($"Error{kind}").Inc();
            var failures = queue.Failures(key) + 1;
            if (failures > maxRetries)
            {
                queue.Forget(key);
                logger.LogError(e, "{Activity} of {Key} failed {Failures} times ({Class}); giving up until the next change or resync", work.Activity, key, failures, kind);
                await RecordAsync(ns, name, work.EventPrefix + "GaveUp", $"{kind}: {e.Message}", ct);
                return;
            }
            var delay = queue.AddRateLimited(key);
            if (kind == KubeErrorClass.Conflict)
            {
                logger.LogInformation("{Activity} of {Key} hit a conflict; retrying in {Delay}", work.Activity, key, delay);
                return;
            }
            logger.LogWarning(e, "{Activity} of {Key} failed ({Class}, attempt {Failures}); retrying in {Delay}", work.Activity, key, kind, failures, delay);
            await RecordAsync(ns, name, work.EventPrefix + "Failed", $"{kind}: {e.Message}", ct);
        }
        finally
        {
            work.Seconds.Observe(clock.Elapsed.TotalSeconds);
        }
    }

    private Task RecordAsync(string ns, string name, string reason, string message, CancellationToken ct) =>
        events.RecordAsync(new StorageCluster { Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = ns } }, "Warning", reason,
            message.Length > 1000 ? message[..1000] : message, ct);
}
