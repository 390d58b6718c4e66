using FeitianK8s.Core.Backup;

namespace FeitianK8s.Core.Views;

// The documents `feitian backup ls --json` prints and the master's console serves (/api/backups).
// Field names are a contract (issue: {"id","volume","snapshot","sizeBytes","uploadedBytes","createdAt"}).

/// <summary>A backup in `backup create --json`, `backup ls --json` and /api/backups.</summary>
public sealed record BackupView(string Id, string Volume, string Snapshot, long SizeBytes, long UploadedBytes, DateTimeOffset CreatedAt)
{
    public static BackupView Of(BackupManifest m) => new(m.Id, m.Volume, m.Snapshot, m.SizeBytes, m.UploadedBytes, m.CreatedAt);
}

/// <summary>`feitian backup ls --json`: the backups of a target, oldest first (the catalog's order).</summary>
public sealed record BackupListView(IReadOnlyList<BackupView> Backups)
{
    public static BackupListView Of(IEnumerable<BackupManifest> manifests) => new(manifests.Select(BackupView.Of).ToList());
}

/// <summary>
/// /api/backups: the same list plus where it comes from. <see cref="Configured"/> is false (and
/// the list empty) when the master was started without a backup target; <see cref="Unreadable"/>
/// names manifests in the target that do not parse.
/// </summary>
public sealed record ConsoleBackupListView(IReadOnlyList<BackupView> Backups, bool Configured, string? Target, IReadOnlyList<string> Unreadable)
{
    public static ConsoleBackupListView NotConfigured { get; } = new([], false, null, []);

    public static ConsoleBackupListView Of(BackupListView list, string target, IEnumerable<string> unreadable) =>
        new(list.Backups, true, target, unreadable.ToList());
}
