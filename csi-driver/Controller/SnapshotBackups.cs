using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// Where a snapshot taken with <c>feitian.io/backup: "true"</c> is handed for its backup to the
/// snapshot target: <see cref="S3SnapshotBackups"/> in the driver. An engine that reports an
/// <see cref="Unavailability"/> has such snapshots refused before anything is taken, so nothing
/// claims a backup that will never be made.
/// </summary>
public interface ISnapshotBackups
{
    /// <summary>Null when backups can be made; else why not (the refusal's message).</summary>
    string? Unavailability { get; }

    /// <summary>Starts (or, for the same snapshot, continues) the backup of <paramref name="snapshot"/> to <paramref name="target"/>.</summary>
    Task StartAsync(SnapshotRecord snapshot, SnapshotTarget target, CancellationToken ct);
}

/// <summary>No backup engine (a driver built without one): backups are refused with the reason.</summary>
public sealed class UnavailableSnapshotBackups : ISnapshotBackups
{
    public string? Unavailability =>
        "backups of CSI snapshots are not available in this driver build; use a VolumeSnapshotClass without " +
        $"{SnapshotParameters.BackupKey}, and back the snapshot up with `feitian backup create`";

    public Task StartAsync(SnapshotRecord snapshot, SnapshotTarget target, CancellationToken ct) =>
        throw CsiErrors.FailedPrecondition($"snapshot '{snapshot.Name}': {Unavailability}");
}

/// <summary>The checks a backup-requesting CreateSnapshot passes before any snapshot is taken.</summary>
public static class SnapshotBackupRules
{
    /// <summary>FAILED_PRECONDITION without a snapshot target or a backup engine; the target otherwise (null when no backup is asked).</summary>
    public static SnapshotTarget? Require(SnapshotParameters parameters, SnapshotTarget? target, ISnapshotBackups backups, string name)
    {
        if (!parameters.Backup)
        {
            return null;
        }
        if (target is null)
        {
            throw CsiErrors.FailedPrecondition(
                $"CreateSnapshot '{name}': {SnapshotParameters.BackupKey} is true but the driver has no snapshot target (StorageCluster spec.snapshotTarget, or --snapshot-endpoint and --snapshot-bucket)");
        }
        if (backups.Unavailability is { } why)
        {
            throw CsiErrors.FailedPrecondition($"CreateSnapshot '{name}': {why}");
        }
        return target;
    }
}
