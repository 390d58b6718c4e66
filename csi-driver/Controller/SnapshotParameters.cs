using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// VolumeSnapshotClass parameters of CreateSnapshot: <c>feitian.io/backup</c> (true/false, default
/// false) asks that the snapshot also be backed up to the cluster's snapshot target. Keys the
/// external-snapshotter adds (<c>csi.storage.k8s.io/*</c>) are not ours and ignored; any other key is refused.
/// </summary>
public sealed record SnapshotParameters(bool Backup)
{
    public const string BackupKey = "feitian.io/backup";

    /// <summary>Snapshot label recording that a backup was asked for.</summary>
    public const string BackupLabel = "feitian.io/backup";

    public static readonly SnapshotParameters None = new(Backup: false);

    public static SnapshotParameters Parse(IReadOnlyDictionary<string, string> parameters)
    {
        var backup = false;
        foreach (var (key, value) in parameters)
        {
            switch (key)
            {
                case BackupKey:
                    CsiErrors.Require(bool.TryParse(value, out backup), $"parameter {BackupKey} must be true or false (got '{value}')");
                    break;
                default:
                    CsiErrors.Require(key.StartsWith("csi.storage.k8s.io/", StringComparison.Ordinal),
                        $"unknown snapshot parameter '{key}' (known: {BackupKey})");
                    break;
            }
        }
        return new SnapshotParameters(backup);
    }

    public Dictionary<string, string> ToLabels() => Backup
        ? new(StringComparer.Ordinal) { [BackupLabel] = "true" }
        : new(StringComparer.Ordinal);
}
