using System.Security.Cryptography;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>
/// Restores a backup into a new volume of this cluster (any cluster that reaches the target):
/// creates the volume, fetches every data block in parallel, checks its SHA-256 against the
/// manifest before writing it, and writes it through a RAF engine holding the volume's lease.
/// Any failure deletes the new volume again: a restore either completes or leaves nothing.
/// </summary>
public sealed class BackupRestorer(BackupStore store, IPanguFileSystem fs, MasterConnection master, ILogger logger)
{
    public string Holder { get; init; } = $"feitian-restore@{Environment.MachineName}";

    /// <summary>Replica count of the new volume; 0 takes the cluster's default (as <c>volume create</c>).</summary>
    public uint Replicas { get; init; }

    public async Task<VolumeInfo> RestoreAsync(string backupId, string volume, IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        VolumeSnapshots.CheckName("volume name", volume);
        var manifest = await new BackupCatalog(store).GetAsync(backupId, ct);
        if (await SnapshotBlockReader.StatVolumeAsync(master, volume, ct) is not null)
        {
            throw new BackupException(BackupErrorKind.AlreadyExists, $"volume '{volume}' already exists; restore into a new name");
        }
        var request = new CreateVolumeRequest { Name = volume, SizeBytes = (ulong)manifest.SizeBytes, Replicas = Replicas };
        request.Labels["feitian.io/source"] = $"backup/{manifest.Id}";
        VolumeInfo info;
        try
        {
            info = await master.CallAsync("create volume", (c, o) => c.CreateVolumeAsync(request, o).ResponseAsync, ct);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            throw new BackupException(BackupErrorKind.AlreadyExists, $"volume '{volume}' already exists; restore into a new name", e);
        }
        try
        {
            await WriteBlocksAsync(manifest, volume, progress, ct);
        }
        catch (Exception e)
        {
            logger.LogWarning("Restore of backup {Id} into {Volume} failed ({Reason}); deleting the incomplete volume", manifest.Id, volume, e.Message);
            await master.CallAsync("delete volume", (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = volume }, o).ResponseAsync, CancellationToken.None);
            throw;
        }
        logger.LogInformation("Backup {Id} restored into volume {Volume}: {Blocks} data blocks", manifest.Id, volume, manifest.Blocks.Count);
        return info;
    }

    private async Task WriteBlocksAsync(BackupManifest manifest, string volume, IProgress<BackupProgress>? progress, CancellationToken ct)
    {
        var options = new RafOptions { Holder = Holder, GcInterval = null, SnapshotRequestInterval = null };
        var engine = await RafVolume.OpenAsync(fs, new MasterVolumeCatalog(master), volume, options, logger, ct);
        await using (engine)
        {
            long done = 0, bytes = 0;
            progress?.Report(new BackupProgress(0, manifest.Blocks.Count, 0));
            await Parallel.ForEachAsync(manifest.Blocks, new ParallelOptions { MaxDegreeOfParallelism = store.Options.Parallelism, CancellationToken = ct }, async (block, token) =>
            {
                var offset = block.Index * manifest.BlockSize;
                var length = (int)Math.Min(manifest.BlockSize, manifest.SizeBytes - offset);
                var key = store.Target.BlockKey(block.Sha256);
                byte[]? data;
                try
                {
                    data = await store.TryGetAsync(key, token);
                }
                catch (BackupException e) when (e.Kind == BackupErrorKind.Corrupt)
                {
                    throw new BackupException(BackupErrorKind.Corrupt, $"backup '{manifest.Id}': block {block.Index} fails its checksum: {e.Message}", e);
                }
                if (data is null)
                {
                    throw new BackupException(BackupErrorKind.Corrupt, $"backup '{manifest.Id}': block {block.Index} (s3://{store.Target.Bucket}/{key}) is missing from the target");
                }
                var actual = Convert.ToHexStringLower(SHA256.HashData(data));
                if (actual != block.Sha256 || data.Length != length)
                {
                    throw new BackupException(BackupErrorKind.Corrupt,
                        $"backup '{manifest.Id}': block {block.Index} (s3://{store.Target.Bucket}/{key}) fails its checksum: {data.Length} bytes with SHA-256 {actual}, expected {length} bytes with SHA-256 {block.Sha256}");
                }
                await engine.WriteAsync(offset, data, fua: false, token);
                progress?.Report(new BackupProgress(Interlocked.Increment(ref done), manifest.Blocks.Count, Interlocked.Add(ref bytes, length)));
            });
            await engine.FlushAsync(ct);
        }
        // Give the lease back, so that the volume's next user does not wait for this holder.
        await master.CallAsync("release lease", (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = volume, Holder = "" }, o).ResponseAsync, ct);
    }
}
