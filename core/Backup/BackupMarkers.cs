using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

public enum MarkerKind
{
    /// <summary>A backup upload: it may rely on any block object in the target until its manifest is written.</summary>
    InProgress,
    /// <summary>A <c>backup rm</c> or <c>backup gc</c> that may delete block objects.</summary>
    Deleting,
}

/// <summary>A marker as listed: whose it is, and when it was last refreshed by the store's clock.</summary>
public sealed record BackupMarker(MarkerKind Kind, string Id, string Key, DateTimeOffset RefreshedAt);

/// <summary>
/// Keeps uploads and block deletes apart with marker objects under <c>PREFIX/markers/</c>, on any
/// S3-compatible store: no locks, only "a LIST that starts after a PUT completed sees the object".
/// <para>Protocol. An upload PUTs its in-progress marker, then waits while a fresh deleting marker
/// exists, and only then lists the stored blocks it may skip. A delete PUTs its deleting marker, then
/// lists the markers: if a fresh in-progress marker exists it deletes no block (rm deletes the
/// manifest only; gc does nothing), else it deletes blocks and removes its marker after the last
/// delete completed. Whichever listed second saw the other's marker, so either the delete keeps every
/// block, or every delete completed before the upload listed the blocks.</para>
/// <para>Freshness. A holder re-PUTs its marker every tenth of <see cref="BackupStoreOptions.MarkerStaleAfter"/>;
/// a marker older than that (store clock: its last-modified time against the holder's own marker) is a dead
/// process's and ignored. A holder that could not refresh for that long stops before relying on it
/// (<see cref="HeldMarker.EnsureFresh"/>): an upload fails before writing its manifest (a rerun resumes),
/// a delete stops deleting.</para>
/// </summary>
public sealed class BackupMarkers(BackupStore store, ILogger logger)
{
    public string Prefix => $"{store.Target.Prefix}markers/";

    public string KeyOf(MarkerKind kind, string id) => $"{Prefix}{(kind == MarkerKind.InProgress ? "in-progress" : "deleting")}-{id}.json";

    /// <summary>PUTs a marker and starts refreshing it; disposing the result stops and deletes it.</summary>
    public async Task<HeldMarker> HoldAsync(MarkerKind kind, string id, CancellationToken ct)
    {
        var key = KeyOf(kind, id);
        var body = JsonSerializer.SerializeToUtf8Bytes(new
        {
            kind = kind == MarkerKind.InProgress ? "in-progress" : "deleting",
            id,
            host = Environment.MachineName,
            pid = Environment.ProcessId,
            startedAt = DateTimeOffset.UtcNow,
        });
        var held = new HeldMarker(store, this, key, body, logger);
        await held.StartAsync(ct);
        return held;
    }

    /// <summary>Every marker in the target.</summary>
    public async Task<List<BackupMarker>> ListAsync(CancellationToken ct)
    {
        var markers = new List<BackupMarker>();
        foreach (var o in await store.ListObjectsAsync(Prefix, ct))
        {
            var name = o.Key[Prefix.Length..];
            if (!name.EndsWith(".json", StringComparison.Ordinal))
            {
                continue;
            }
            name = name[..^".json".Length];
            if (name.StartsWith("in-progress-", StringComparison.Ordinal))
            {
                markers.Add(new BackupMarker(MarkerKind.InProgress, name["in-progress-".Length..], o.Key, o.LastModified));
            }
            else if (name.StartsWith("deleting-", StringComparison.Ordinal))
            {
                markers.Add(new BackupMarker(MarkerKind.Deleting, name["deleting-".Length..], o.Key, o.LastModified));
            }
        }
        return markers;
    }

    /// <summary>
    /// The other holders' fresh markers of <paramref name="kind"/>, judged against <paramref name="self"/>'s own
    /// marker as listed (the store's "now", a little early: others look fresher, never staler); and the stale ones.
    /// </summary>
    public async Task<(List<BackupMarker> Fresh, List<BackupMarker> Stale, DateTimeOffset Now)> OthersAsync(HeldMarker self, MarkerKind kind, CancellationToken ct)
    {
        var all = await ListAsync(ct);
        var now = all.FirstOrDefault(m => m.Key == self.Key)?.RefreshedAt
            ?? throw new BackupException(BackupErrorKind.Unavailable,
                $"marker s3://{store.Target.Bucket}/{self.Key} was written but the store does not list it: backups need a store whose LIST sees completed PUTs");
        var others = all.Where(m => m.Kind == kind && m.Key != self.Key).ToList();
        var fresh = others.Where(m => now - m.RefreshedAt < store.Options.MarkerStaleAfter).ToList();
        return (fresh, others.Except(fresh).ToList(), now);
    }

    public static string Describe(IEnumerable<BackupMarker> markers, DateTimeOffset now) =>
        string.Join(", ", markers.Select(m => $"{(m.Kind == MarkerKind.InProgress ? "backup upload" : "delete")} {m.Id} (marker refreshed {Math.Max(0, (now - m.RefreshedAt).TotalSeconds):0} s ago)"));
}

/// <summary>A marker this process holds: refreshed in the background until disposed, then deleted.</summary>
public sealed class HeldMarker : IAsyncDisposable
{
    private readonly BackupStore _store;
    private readonly byte[] _body;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _sinceRefresh = new();
    private Task _refresher = Task.CompletedTask;
    private long _refreshStartedTicks;

    internal HeldMarker(BackupStore store, BackupMarkers markers, string key, byte[] body, ILogger logger)
    {
        _store = store;
        Markers = markers;
        Key = key;
        _body = body;
        _logger = logger;
    }

    public BackupMarkers Markers { get; }
    public string Key { get; }

    private TimeSpan StaleAfter => _store.Options.MarkerStaleAfter;
    private TimeSpan RefreshEvery => StaleAfter / 10;

    internal async Task StartAsync(CancellationToken ct)
    {
        _sinceRefresh.Start();
        await RefreshAsync(ct);
        _refresher = Task.Run(() => RefreshLoopAsync(_stop.Token), CancellationToken.None);
    }

    private async Task RefreshAsync(CancellationToken ct)
    {
        // Counted from before the PUT: the store's time of the object is no earlier than this.
        var started = _sinceRefresh.Elapsed.Ticks;
        await _store.PutAsync(Key, _body, ct);
        Interlocked.Exchange(ref _refreshStartedTicks, started);
    }

    private async Task RefreshLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(RefreshEvery, ct);
                await RefreshAsync(ct);
            }
            catch (Exception) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Retried; a marker not refreshed for too long is caught by EnsureFresh.
                _logger.LogWarning("Refreshing marker {Key} failed ({Reason}); retrying", Key, e.Message);
            }
        }
    }

    /// <summary>Throws when the marker may look stale to others: this process could not refresh it in time (paused, or the store unreachable).</summary>
    public void EnsureFresh()
    {
        var age = _sinceRefresh.Elapsed - TimeSpan.FromTicks(Interlocked.Read(ref _refreshStartedTicks));
        if (age >= StaleAfter - RefreshEvery)
        {
            throw new BackupException(BackupErrorKind.Unavailable,
                $"marker s3://{_store.Target.Bucket}/{Key} was not refreshed for {age.TotalSeconds:0} s (it is stale after {StaleAfter.TotalSeconds:0} s), so another process may have ignored it; stopped (run the command again)");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _refresher;
        _stop.Dispose();
        try
        {
            await _store.DeleteAsync(Key, CancellationToken.None);
        }
        catch (BackupException e)
        {
            _logger.LogWarning("Deleting marker {Key} failed ({Reason}); it goes stale on its own", Key, e.Message);
        }
    }
}
