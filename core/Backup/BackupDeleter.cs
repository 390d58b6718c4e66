using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>What <c>backup rm</c> did: block objects deleted, kept because other backups use them, and kept because uploads were in progress.</summary>
public sealed record BackupDeleteResult(int Deleted, int KeptShared, int KeptForUploads, string? UploadsInProgress);

/// <summary>
/// Deletes a backup: its manifest first (from then on the backup is gone, and a crash leaves at
/// most unreferenced blocks, never a backup missing blocks), then the blocks no other backup in
/// the target references. A manifest in the target that does not parse may reference anything:
/// then no block is deleted. While an upload is in progress (a fresh in-progress marker,
/// <see cref="BackupMarkers"/>) it may rely on any stored block: then only the manifest is deleted,
/// and <see cref="BackupCollector"/> frees the blocks later.
/// </summary>
public sealed class BackupDeleter(BackupStore store, ILogger logger)
{
    public async Task<BackupDeleteResult> DeleteAsync(string backupId, IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        var manifest = await new BackupCatalog(store).GetAsync(backupId, ct);
        var markers = new BackupMarkers(store, logger);
        await using var marker = await markers.HoldAsync(MarkerKind.Deleting, BackupTarget.NewBackupId(DateTimeOffset.UtcNow).Replace("bk-", "rm-", StringComparison.Ordinal), ct);
        var (uploads, _, now) = await markers.OthersAsync(marker, MarkerKind.InProgress, ct);
        var (backups, unreadable) = await new BackupCatalog(store).ListAsync(ct);
        if (unreadable.Count > 0)
        {
            throw new BackupException(BackupErrorKind.Corrupt,
                $"backup '{backupId}' not deleted: {unreadable.Count} manifest(s) in {store.Target} do not parse, so the blocks they share are unknown: {unreadable[0].Reason}");
        }
        var stillUsed = backups.Where(b => b.Id != backupId).SelectMany(b => b.Blocks).Select(b => b.Sha256).ToHashSet(StringComparer.Ordinal);
        var own = manifest.Blocks.Select(b => b.Sha256).Distinct(StringComparer.Ordinal).ToList();
        var orphans = own.Where(h => !stillUsed.Contains(h)).ToList();
        await store.DeleteAsync(store.Target.ManifestKey(backupId), ct);
        if (uploads.Count > 0)
        {
            var busy = BackupMarkers.Describe(uploads, now);
            logger.LogInformation("Backup {Id} deleted from {Target}; its {Orphans} unshared blocks are kept while {Uploads} run(s) (`feitian backup gc` frees them later)",
                backupId, store.Target, orphans.Count, busy);
            return new BackupDeleteResult(0, own.Count - orphans.Count, orphans.Count, busy);
        }
        long done = 0;
        await Parallel.ForEachAsync(orphans, new ParallelOptions { MaxDegreeOfParallelism = store.Options.Parallelism, CancellationToken = ct }, async (hash, token) =>
        {
            marker.EnsureFresh(); // an upload that took this delete for dead may be listing the blocks
            await store.DeleteAsync(store.Target.BlockKey(hash), token);
            var deleted = Interlocked.Increment(ref done);
            progress?.Report(new BackupProgress(deleted, orphans.Count, deleted * manifest.BlockSize));
        });
        logger.LogInformation("Backup {Id} deleted from {Target}: {Deleted} blocks deleted, {Kept} kept for other backups",
            backupId, store.Target, orphans.Count, own.Count - orphans.Count);
        return new BackupDeleteResult(orphans.Count, own.Count - orphans.Count, 0, null);
    }
}
