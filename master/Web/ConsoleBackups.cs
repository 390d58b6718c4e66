using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Views;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Web;

/// <summary>The backup target the console lists: <c>--backup-target</c>, <c>--backup-endpoint</c>, <c>--backup-region</c>.</summary>
public sealed record ConsoleBackupTarget(BackupTarget Target, BackupStoreOptions Store)
{
    /// <summary>Null when none of the three options is given; <see cref="ArgumentException"/> with the reason when they are incomplete or malformed.</summary>
    public static ConsoleBackupTarget? FromOptions(string? target, string? endpoint, string? region)
    {
        if (target is null && endpoint is null && region is null)
        {
            return null;
        }
        if (string.IsNullOrWhiteSpace(target) || string.IsNullOrWhiteSpace(endpoint))
        {
            throw new ArgumentException("--backup-target s3://BUCKET[/PREFIX] and --backup-endpoint URL go together (--backup-region is optional)");
        }
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Host.Length == 0)
        {
            throw new ArgumentException($"--backup-endpoint '{endpoint}' is not an http(s) URL, e.g. http://127.0.0.1:9000");
        }
        if (region is not null && string.IsNullOrWhiteSpace(region))
        {
            throw new ArgumentException("--backup-region is empty (default us-east-1)");
        }
        try
        {
            return new ConsoleBackupTarget(BackupTarget.Parse(target), new BackupStoreOptions(endpoint, region ?? BackupStoreOptions.DefaultRegion));
        }
        catch (BackupException e)
        {
            throw new ArgumentException($"--backup-target: {e.Message}");
        }
    }

    public override string ToString() => $"{Target} at {Store.Endpoint}";
}

/// <summary>A listing for /api/backups: the document, or the error the object store gave.</summary>
public sealed record ConsoleBackupListing(ConsoleBackupListView? View, string? Error);

/// <summary>
/// Lists the backup target for the console, read-only. One listing runs at a time and its result
/// (or error) is kept for <see cref="CacheFor"/>, so refreshing pages do not hammer the object store;
/// a failing or slow store gives an error, never an exception out of here.
/// </summary>
public sealed class ConsoleBackups(ConsoleBackupTarget? target, TimeProvider clock, ILogger<ConsoleBackups> logger) : IDisposable
{
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan ListTimeout = TimeSpan.FromSeconds(20);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private (DateTimeOffset At, ConsoleBackupListing Listing)? _last;

    public ConsoleBackupTarget? Target => target;

    public async Task<ConsoleBackupListing> ListAsync(CancellationToken ct)
    {
        if (target is null)
        {
            return new ConsoleBackupListing(ConsoleBackupListView.NotConfigured, null);
        }
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_last is { } last && clock.GetUtcNow() - last.At < CacheFor)
            {
                return last.Listing;
            }
            var listing = await FetchAsync(target).ConfigureAwait(false);
            _last = (clock.GetUtcNow(), listing);
            return listing;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Not tied to one request: the result serves every page for <see cref="CacheFor"/>.</summary>
    private async Task<ConsoleBackupListing> FetchAsync(ConsoleBackupTarget t)
    {
        using var timeout = new CancellationTokenSource(ListTimeout);
        try
        {
            using var store = BackupStore.Open(t.Target, t.Store);
            var (backups, unreadable) = await new BackupCatalog(store).ListAsync(timeout.Token).ConfigureAwait(false);
            foreach (var bad in unreadable)
            {
                logger.LogWarning("Backup manifest {Key} in {Target} is unreadable: {Reason}", bad.Key, t, bad.Reason);
            }
            return new ConsoleBackupListing(ConsoleBackupListView.Of(BackupListView.Of(backups), t.Target.ToString(), unreadable.Select(u => u.Reason)), null);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return Failed(t, $"the object store did not answer within {ListTimeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The object store's errors (and any client failure) become the console's 502, never a crash.
            return Failed(t, e.Message);
        }
    }

    private ConsoleBackupListing Failed(ConsoleBackupTarget t, string reason)
    {
        logger.LogWarning("Listing backups in {Target} for the console failed: {Reason}", t, reason);
        return new ConsoleBackupListing(null, $"cannot list backups in {t}: {reason}");
    }

    public void Dispose() => _gate.Dispose();
}
