using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>What <c>backup gc</c> did: unreferenced block objects deleted (and their bytes), kept as younger than the grace period, and stale markers removed.</summary>
public sealed record BackupGcResult(int Deleted, long DeletedBytes, int KeptYoung, int StaleMarkersDeleted);

/// <summary>
/// Frees what no backup references: block objects left by uploads killed and never resumed, or kept
/// by a <c>backup rm</c> that ran beside an upload. Mark and sweep: the marked set is every block of
/// every manifest; a block outside it is deleted only when older than <see cref="Grace"/> by the
/// store's clock (an upload of an older version that writes no marker, or a store whose listing
/// lags, may still be about to reference it). Nothing is deleted while an upload holds a fresh
/// in-progress marker (it may rely on any stored block; <see cref="BackupMarkers"/>), or while a
/// manifest does not parse (it may reference anything). Stale markers are removed.
/// </summary>
public sealed class BackupCollector(BackupStore store, ILogger logger)
{
    public static readonly TimeSpan DefaultGrace = TimeSpan.FromHours(1);

    /// <summary>Unreferenced blocks written more recently than this are kept.</summary>
    public TimeSpan Grace { get; init; } = DefaultGrace;

    public async Task<BackupGcResult> CollectAsync(IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        if (Grace < TimeSpan.Zero)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, $"grace period {Grace} is negative");
        }
        var markers = new BackupMarkers(store, logger);
        await using var marker = await markers.HoldAsync(MarkerKind.Deleting, BackupTarget.NewBackupId(DateTimeOffset.UtcNow).Replace("bk-", "gc-", StringComparison.Ordinal), ct);
        var (uploads, staleUploads, now) = await markers.OthersAsync(marker, MarkerKind.InProgress, ct);
        if (uploads.Count > 0)
        {
            throw new BackupException(BackupErrorKind.Unavailable,
                $"nothing collected in {store.Target}: {BackupMarkers.Describe(uploads, now)} in progress may rely on any stored block; run gc again when it is done (a marker of a process that is gone is ignored {store.Options.MarkerStaleAfter.TotalMinutes:0.#} min after its last refresh)");
        }
        var (backups, unreadable) = await new BackupCatalog(store).ListAsync(ct);
        if (unreadable.Count > 0)
        {
            throw new BackupException(BackupErrorKind.Corrupt,
                $"nothing collected in {store.Target}: {unreadable.Count} manifest(s) do not parse, so the blocks they reference are unknown: {unreadable[0].Reason}");
        }
        var referenced = backups.SelectMany(b => b.Blocks).Select(b => b.Sha256).ToHashSet(StringComparer.Ordinal);
        var blocks = await store.ListObjectsAsync(store.Target.BlocksPrefix, ct);
        var unreferenced = blocks.Where(o => !referenced.Contains(o.Key[store.Target.BlocksPrefix.Length..])).ToList();
        var doomed = unreferenced.Where(o => now - o.LastModified >= Grace).ToList();
        long done = 0, bytes = 0;
        await Parallel.ForEachAsync(doomed, new ParallelOptions { MaxDegreeOfParallelism = store.Options.Parallelism, CancellationToken = ct }, async (o, token) =>
        {
            marker.EnsureFresh(); // an upload that took this gc for dead may be listing the blocks
            await store.DeleteAsync(o.Key, token);
            progress?.Report(new BackupProgress(Interlocked.Increment(ref done), doomed.Count, Interlocked.Add(ref bytes, o.Size)));
        });
        var (_, staleDeletes, _) = await markers.OthersAsync(marker, MarkerKind.Deleting, ct);
        foreach (var stale in staleUploads.Concat(staleDeletes))
        {
            await store.DeleteAsync(stale.Key, ct);
        }
        logger.LogInformation("Backup gc of {Target}: {Deleted} unreferenced blocks deleted ({Bytes} bytes), {Young} younger than {Grace} kept, {Referenced} referenced by {Backups} backups, {Stale} stale markers removed",
            store.Target, doomed.Count, bytes, unreferenced.Count - doomed.Count, Grace, blocks.Count - unreferenced.Count, backups.Count, staleUploads.Count + staleDeletes.Count);
        return new BackupGcResult(doomed.Count, bytes, unreferenced.Count - doomed.Count, staleUploads.Count + staleDeletes.Count);
    }
}
