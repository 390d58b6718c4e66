using System.Collections.Concurrent;
using System.Security.Cryptography;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>How far a backup, restore or delete is: blocks handled of all, and bytes sent or fetched.</summary>
public readonly record struct BackupProgress(long BlocksDone, long BlocksTotal, long Bytes);

/// <summary>
/// Backs a snapshot up into a target, incrementally:
/// <list type="bullet">
/// <item>Blocks whose frozen-index pieces (volume range and writing record) equal those of the
/// volume's previous backup's snapshot are not even read: their hash comes from its manifest.</item>
/// <item>Every other block is read and hashed; all-zero blocks are holes (not stored); a block whose
/// hash is already in the target (any backup, any volume, or the part a crashed run stored) is not sent.</item>
/// <item>An in-progress marker is held from before the target is listed until the manifest is written,
/// so that no <c>backup rm</c>/<c>gc</c> deletes a block this backup found stored and skipped (<see cref="BackupMarkers"/>).</item>
/// <item>The manifest is written last: a backup exists only once all its blocks are stored, and a
/// rerun after a crash re-sends nothing that is stored.</item>
/// </list>
/// </summary>
public sealed class BackupUploader(BackupStore store, IPanguFileSystem fs, MasterConnection master, ILogger logger)
{
    /// <summary>
    /// 1 MiB: small enough that a 1% change of a volume's blocks sends about 1% of it again, large
    /// enough that a 1 GiB volume is 1024 objects (S3 requests cost per call, and per-object overhead
    /// dominates below a few hundred KiB).
    /// </summary>
    public const int DefaultBlockSize = 1 << 20;

    public int BlockSize { get; init; } = DefaultBlockSize;

    public async Task<BackupManifest> BackUpAsync(string snapshot, IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        await using var reader = await SnapshotBlockReader.OpenAsync(fs, master, snapshot, logger, ct);
        var createdAt = DateTimeOffset.UtcNow;
        var id = BackupTarget.NewBackupId(createdAt);
        // The in-progress marker comes first, and no delete may run when the target is listed (BackupMarkers).
        await using var marker = await new BackupMarkers(store, logger).HoldAsync(MarkerKind.InProgress, id, ct);
        await WaitForDeletesAsync(marker, ct);
        var catalog = await new BackupCatalog(store).ListAsync(ct);
        // The listing cache: every block object in the target with its size, checked instead of one HEAD
        // per block. An object counts as stored only at the block's length: a server that exposes a
        // PUT cut short by a crash (real S3 never does) gets that block again.
        var stored = new ConcurrentDictionary<string, long>(
            (await store.ListAsync(store.Target.BlocksPrefix, ct)).Select(p => KeyValuePair.Create(p.Key[store.Target.BlocksPrefix.Length..], p.Value)),
            StringComparer.Ordinal);
        var claimed = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        var previous = await FindPreviousAsync(reader, catalog.Backups, ct);
        var count = BackupManifest.BlockCountOf(reader.SizeBytes, BlockSize);
        var hashes = new string?[count];
        long uploaded = 0, done = 0, reused = 0;
        logger.LogInformation("Backup {Id} of snapshot {Snapshot} (volume {Volume}, {Size} bytes, {Blocks} blocks) to {Target}; previous backup {Previous}; {Stored} blocks already stored",
            id, snapshot, reader.Snapshot.Volume, reader.SizeBytes, count, store.Target, previous?.Manifest.Id ?? "none", stored.Count);
        progress?.Report(new BackupProgress(0, count, 0));

        await Parallel.ForEachAsync(LongRange(count), new ParallelOptions { MaxDegreeOfParallelism = store.Options.Parallelism, CancellationToken = ct }, async (index, token) =>
        {
            var offset = index * BlockSize;
            var length = (int)Math.Min(BlockSize, reader.SizeBytes - offset);
            if (previous?.Unchanged(reader, index, offset, length) is { } same && (same.Length == 0 || stored.GetValueOrDefault(same) == length))
            {
                hashes[index] = same.Length == 0 ? null : same;
                Interlocked.Increment(ref reused);
            }
            else if (!reader.IsHole(offset, length))
            {
                var block = new byte[length];
                await reader.ReadAsync(offset, block, token);
                if (!block.AsSpan().ContainsAnyExcept((byte)0))
                {
                    hashes[index] = null;
                }
                else
                {
                    var hash = Convert.ToHexStringLower(SHA256.HashData(block));
                    hashes[index] = hash;
                    if (stored.GetValueOrDefault(hash) != length && claimed.TryAdd(hash, 0))
                    {
                        await store.PutAsync(store.Target.BlockKey(hash), block, token);
                        stored[hash] = length;
                        Interlocked.Add(ref uploaded, length);
                    }
                }
            }
            progress?.Report(new BackupProgress(Interlocked.Increment(ref done), count, Interlocked.Read(ref uploaded)));
        });

        var blocks = hashes.Select((h, i) => h is null ? null : new BackupBlock(i, h)).OfType<BackupBlock>().ToList();
        var manifest = new BackupManifest(id, reader.Snapshot.Volume, snapshot, reader.Snapshot.CreatedAt, reader.SizeBytes, BlockSize, uploaded, createdAt, blocks);
        marker.EnsureFresh(); // else a delete may have taken this upload for dead and removed blocks it relies on
        await store.PutAsync(store.Target.ManifestKey(id), manifest.Serialize(), ct);
        logger.LogInformation("Backup {Id} stored: {Blocks} data blocks, {Uploaded} bytes sent, {Reused} blocks unchanged since {Previous}",
            id, blocks.Count, uploaded, reused, previous?.Manifest.Id ?? "none");
        return manifest;
    }

    /// <summary>Waits while a <c>backup rm</c> or <c>gc</c> holds a fresh deleting marker (it deletes only while its marker is fresh).</summary>
    private async Task WaitForDeletesAsync(HeldMarker marker, CancellationToken ct)
    {
        var logged = false;
        while (true)
        {
            var (deletes, _, now) = await marker.Markers.OthersAsync(marker, MarkerKind.Deleting, ct);
            if (deletes.Count == 0)
            {
                return;
            }
            if (!logged)
            {
                logger.LogInformation("Backup waits for {Deletes} to finish before it lists {Target}", BackupMarkers.Describe(deletes, now), store.Target);
                logged = true;
            }
            marker.EnsureFresh();
            await Task.Delay(DeleteWaitPoll, ct);
        }
    }

    /// <summary>How often a waiting upload looks whether the deletes in the target are done.</summary>
    public TimeSpan DeleteWaitPoll { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The volume's newest backup in this target whose snapshot is still in this cluster, in this
    /// volume's directory, taken at the time the manifest says: only then do equal index pieces mean equal bytes.
    /// </summary>
    private async Task<PreviousBackup?> FindPreviousAsync(SnapshotBlockReader reader, IReadOnlyList<BackupManifest> backups, CancellationToken ct)
    {
        foreach (var candidate in backups.Where(b => b.Volume == reader.Snapshot.Volume && b.BlockSize == BlockSize).OrderByDescending(b => b.CreatedAt))
        {
            if (candidate.Snapshot == reader.Snapshot.Name && candidate.SnapshotCreatedAt == reader.Snapshot.CreatedAt)
            {
                return new PreviousBackup(candidate, null);
            }
            var record = await new VolumeSnapshots(fs, master, logger).GetAsync(candidate.Snapshot, ct);
            if (record is null || record.Volume != candidate.Volume || record.CreatedAt != candidate.SnapshotCreatedAt)
            {
                continue;
            }
            if (await SnapshotBlockReader.TryReadFrozenAsync(fs, reader.Volume.Directory, candidate.Snapshot, ct) is { } frozen)
            {
                return new PreviousBackup(candidate, [.. frozen.Extents.OrderBy(e => e.Start)]);
            }
        }
        return null;
    }

    private static IEnumerable<long> LongRange(long count)
    {
        for (var i = 0L; i < count; i++)
        {
            yield return i;
        }
    }

    /// <summary>A previous backup of the same volume; <see cref="Extents"/> null when it is of this very snapshot (every block is unchanged).</summary>
    private sealed class PreviousBackup(BackupManifest manifest, Extent[]? extents)
    {
        private readonly Dictionary<long, string> _hashes = manifest.Blocks.ToDictionary(b => b.Index, b => b.Sha256);

        public BackupManifest Manifest { get; } = manifest;
        private Extent[]? Extents { get; } = extents;

        /// <summary>The block's hash in the previous backup ("" for a hole) when its bytes cannot have changed; null when they may have.</summary>
        public string? Unchanged(SnapshotBlockReader reader, long index, long offset, int length)
        {
            if (offset + length > Manifest.SizeBytes)
            {
                return null; // the volume grew: the block is new or partly new
            }
            if (Extents is not null && !reader.Signature(offset, length).SequenceEqual(SnapshotBlockReader.Signature(Extents, offset, length)))
            {
                return null;
            }
            return _hashes.GetValueOrDefault(index, "");
        }
    }
}
