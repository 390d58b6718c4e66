using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Kube;

/// <summary>How to list and watch one kind of object.</summary>
public sealed record WatchSource<T, TList>(
    string Name,
    Func<CancellationToken, Task<TList>> List,
    Func<string, int, CancellationToken, Task<HttpOperationResponse<TList>>> Watch)
    where T : IKubernetesObject<V1ObjectMeta>
    where TList : IKubernetesObject<V1ListMeta>, IItems<T>;

/// <summary>
/// List-then-watch that runs until cancelled: resumes from the last resourceVersion seen
/// (bookmarks included), re-lists after 410 Gone, and reconnects after any failure with
/// exponential backoff and jitter. Each watch asks for a server-side timeout, so a silently
/// dead connection is replaced within minutes.
/// </summary>
public sealed class ResourceWatcher<T, TList>(
    WatchSource<T, TList> source,
    Action<WatchEventType, T> onEvent,
    ILogger logger,
    TimeSpan? maxBackoff = null)
    where T : IKubernetesObject<V1ObjectMeta>
    where TList : IKubernetesObject<V1ListMeta>, IItems<T>
{
    private readonly TimeSpan _maxBackoff = maxBackoff ?? TimeSpan.FromSeconds(30);

    public long Relists { get; private set; }
    public long Reconnects { get; private set; }

    public async Task RunAsync(CancellationToken ct)
    {
        string? resourceVersion = null;
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (resourceVersion is null)
                {
                    var list = await source.List(ct);
                    Relists++;
                    foreach (var item in list.Items ?? [])
                    {
                        onEvent(WatchEventType.Added, item);
                    }
                    resourceVersion = list.Metadata?.ResourceVersion ?? "";
                    failures = 0;
                }
                var gone = false;
                var timeout = 240 + Random.Shared.Next(120);
                // The generic Task<HttpOperationResponse<TList>> watch is the one typed path that works for
                // custom resources too (the generated WatchList*Async for custom objects yields untyped objects).
#pragma warning disable CS0618
                await foreach (var (type, item) in source.Watch(resourceVersion, timeout, ct).WatchAsync<T, TList>(e =>
                {
                    if (KubeErrors.Classify(e) == KubeErrorClass.Gone)
                    {
                        gone = true;
                    }
                    else
                    {
                        logger.LogWarning(e, "Watch {Watch} reported an error", source.Name);
                    }
                }, ct))
#pragma warning restore CS0618
                {
                    failures = 0;
                    if (item?.Metadata?.ResourceVersion is { } rv)
                    {
                        resourceVersion = rv;
                    }
                    if (type is WatchEventType.Bookmark or WatchEventType.Error)
                    {
                        continue;
                    }
                    onEvent(type, item!);
                }
                if (gone)
                {
                    logger.LogInformation("Watch {Watch}: resourceVersion {ResourceVersion} is gone, re-listing", source.Name, resourceVersion);
                    resourceVersion = null;
                }
                Reconnects++;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (KubeErrors.Classify(e) == KubeErrorClass.Gone)
                {
                    logger.LogInformation("Watch {Watch}: resourceVersion {ResourceVersion} is gone, re-listing", source.Name, resourceVersion);
                    resourceVersion = null;
                    continue;
                }
                failures++;
                var backoff = Backoff(failures);
                logger.LogWarning(e, "Watch {Watch} failed ({Failures} in a row); reconnecting in {Delay}", source.Name, failures, backoff);
                Reconnects++;
                try
                {
                    await Task.Delay(backoff, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private TimeSpan Backoff(int failures)
    {
        var ms = Math.Min(_maxBackoff.TotalMilliseconds, 250 * Math.Pow(2, Math.Min(failures - 1, 20)));
        return TimeSpan.FromMilliseconds(ms / 2 + Random.Shared.NextDouble() * ms / 2);
    }
}
