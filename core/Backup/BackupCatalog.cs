namespace FeitianK8s.Core.Backup;

/// <summary>A manifest in the target that could not be read as one, with the reason.</summary>
public sealed record UnreadableManifest(string Key, string Reason);

/// <summary>The backups in a target: its manifests.</summary>
public sealed class BackupCatalog(BackupStore store)
{
    /// <summary>Every backup in the target, oldest first, and the manifest objects that do not parse.</summary>
    public async Task<(List<BackupManifest> Backups, List<UnreadableManifest> Unreadable)> ListAsync(CancellationToken ct)
    {
        var keys = (await store.ListAsync(store.Target.ManifestsPrefix, ct)).Keys
            .Where(k => k.EndsWith(".json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        var backups = new List<BackupManifest>();
        var unreadable = new List<UnreadableManifest>();
        foreach (var key in keys)
        {
            var bytes = await store.TryGetAsync(key, ct);
            if (bytes is null)
            {
                continue; // deleted meanwhile
            }
            try
            {
                backups.Add(BackupManifest.Parse(bytes, $"s3://{store.Target.Bucket}/{key}"));
            }
            catch (BackupException e) when (e.Kind == BackupErrorKind.Corrupt)
            {
                unreadable.Add(new UnreadableManifest(key, e.Message));
            }
        }
        return (backups.OrderBy(b => b.CreatedAt).ThenBy(b => b.Id, StringComparer.Ordinal).ToList(), unreadable);
    }

    /// <summary>The backup <paramref name="id"/>; a clear error when the id is malformed, unknown or its manifest does not verify.</summary>
    public async Task<BackupManifest> GetAsync(string id, CancellationToken ct)
    {
        BackupTarget.CheckBackupId(id);
        var key = store.Target.ManifestKey(id);
        var bytes = await store.TryGetAsync(key, ct)
            ?? throw new BackupException(BackupErrorKind.NotFound, $"backup '{id}' does not exist in {store.Target} (`feitian backup ls` lists the backups there)");
        var manifest = BackupManifest.Parse(bytes, $"s3://{store.Target.Bucket}/{key}");
        return manifest.Id == id
            ? manifest
            : throw new BackupException(BackupErrorKind.Corrupt, $"backup manifest s3://{store.Target.Bucket}/{key} names backup '{manifest.Id}', not '{id}'");
    }
}
