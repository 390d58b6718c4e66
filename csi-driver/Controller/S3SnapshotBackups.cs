using System.Collections.Concurrent;
using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// Backs up CSI snapshots taken with <c>feitian.io/backup: "true"</c> to the snapshot target
/// (<c>s3://BUCKET</c> at the target's endpoint), with the engine of <c>feitian backup create</c>:
/// incremental against the volume's previous backup there, content-addressed blocks, resumable.
/// CreateSnapshot returns once the snapshot exists (it is usable at once); the upload runs in the
/// background, one per snapshot at a time. A CreateSnapshot retried for the same snapshot after an
/// upload failed or the controller restarted starts it again, and blocks already stored are not
/// sent again. Credentials come only from <c>AWS_ACCESS_KEY_ID</c>/<c>AWS_SECRET_ACCESS_KEY</c>.
/// </summary>
public sealed class S3SnapshotBackups(PanguClient fs, ILogger<S3SnapshotBackups> logger) : ISnapshotBackups, IDisposable
{
    private readonly ConcurrentDictionary<string, Task<bool>> _running = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();

    public string? Unavailability => null;

    /// <summary>The snapshots whose upload is running now (for tests and logs).</summary>
    public IReadOnlyCollection<string> Running => _running.Where(r => !r.Value.IsCompleted).Select(r => r.Key).ToList();

    public Task StartAsync(SnapshotRecord snapshot, SnapshotTarget target, CancellationToken ct)
    {
        // Running, or done: nothing to start. A failed one is started again.
        if (_running.TryGetValue(snapshot.Name, out var current) && (!current.IsCompleted || current.Result))
        {
            return Task.CompletedTask;
        }
        BackupStore store;
        try
        {
            store = BackupStore.Open(BackupTarget.Parse(BackupTarget.Scheme + target.Bucket),
                new BackupStoreOptions(target.Endpoint.ToString(), target.Region ?? BackupStoreOptions.DefaultRegion));
        }
        catch (BackupException e)
        {
            throw CsiErrors.FailedPrecondition($"snapshot '{snapshot.Name}': cannot back up to {target}: {e.Message}");
        }
        _running[snapshot.Name] = Task.Run(() => UploadAsync(store, snapshot, target), CancellationToken.None);
        return Task.CompletedTask;
    }

    private async Task<bool> UploadAsync(BackupStore store, SnapshotRecord snapshot, SnapshotTarget target)
    {
        using (store)
        {
            try
            {
                logger.LogInformation("Backup of snapshot {Snapshot} (volume {Volume}) to {Target} started", snapshot.Name, snapshot.Volume, target);
                var uploader = new BackupUploader(store, fs, fs.Master, logger);
                var manifest = await uploader.BackUpAsync(snapshot.Name, progress: null, _stopping.Token);
                logger.LogInformation("Backup {Backup} of snapshot {Snapshot} stored in {Target}: {Uploaded} of {Size} bytes sent",
                    manifest.Id, snapshot.Name, store.Target, manifest.UploadedBytes, manifest.SizeBytes);
                return true;
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                logger.LogInformation("Backup of snapshot {Snapshot} stopped with the driver; a retried CreateSnapshot resumes it", snapshot.Name);
                return false;
            }
            catch (Exception e)
            {
                logger.LogError(e, "Backup of snapshot {Snapshot} to {Target} failed; a retried CreateSnapshot resumes it", snapshot.Name, target);
                return false;
            }
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
    }
}
