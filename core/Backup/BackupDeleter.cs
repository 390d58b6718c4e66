using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>
/// Deletes a backup: its manifest first (from then on the backup is gone, and a crash leaves at
/// most unreferenced blocks, never a backup missing blocks), then the blocks no other backup in
/// the target references. A manifest in the target that does not parse may reference anything:
/// then no block is deleted.
/// </summary>
public sealed class BackupDeleter(BackupStore store, ILogger logger)
{
    /// <summary>Returns the number of block objects deleted.</summary>
    public async Task<int> DeleteAsync(string backupId, IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        var manifest = await new BackupCatalog(store).GetAsync(backupId, ct);
        var (backups, unreadable) = await new BackupCatalog(store).ListAsync(ct);
        if (unreadable.Count > 0)
        {
            throw new BackupException(BackupErrorKind.Corrupt,
                $"backup '{backupId}' not deleted: {unreadable.Count} manifest(s) in {store.Target} do not parse, so the blocks they share are unknown: {unreadable[0].Reason}");
        }
        var stillUsed = backups.Where(b => b.Id != backupId).SelectMany(b => b.Blocks).Select(b => b.Sha256).ToHashSet(StringComparer.Ordinal);
        var orphans = manifest.Blocks.Select(b => b.Sha256).Distinct(StringComparer.Ordinal).Where(h => !stillUsed.Contains(h)).ToList();
        await store.DeleteAsync(store.Target.ManifestKey(backupId), ct);
        long done = 0;
        await Parallel.ForEachAsync(orphans, new ParallelOptions { MaxDegreeOfParallelism = store.Options.Parallelism, CancellationToken = ct }, async (hash, token) =>
        {
            await store.DeleteAsync(store.Target.BlockKey(hash), token);
            var deleted = Interlocked.Increment(ref done);
            progress?.Report(new BackupProgress(deleted, orphans.Count, deleted * manifest.BlockSize));
        });
        logger.LogInformation("Backup {Id} deleted from {Target}: {Deleted} blocks deleted, {Kept} kept for other backups",
            backupId, store.Target, orphans.Count, manifest.Blocks.Count - orphans.Count);
        return orphans.Count;
    }
}
