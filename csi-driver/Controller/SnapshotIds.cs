using System.Text.RegularExpressions;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// Maps the name a CO gives CreateSnapshot (any string of up to 128 bytes) to the snapshot's
/// cluster-wide name, the way <see cref="VolumeIds"/> maps volume names: a DNS-1123 name
/// (<c>snapshot-…</c> from the external-snapshotter) is its own id, any other becomes
/// <c>s-</c> + 40 hex digits of its SHA-256 (ids of that form are reserved for hashed names).
/// The CO's name is recorded with the snapshot (label <see cref="VolumeIds.NameLabel"/>) and compared on create.
/// </summary>
public static partial class SnapshotIds
{
    public static string FromName(string name) => VolumeIds.Map(name, "s-", ReservedHashedId());

    /// <summary>The CO's name of a snapshot: its label, or its id for snapshots taken outside the driver (the CLI).</summary>
    public static string NameOf(string id, IReadOnlyDictionary<string, string> labels) => labels.GetValueOrDefault(VolumeIds.NameLabel, id);

    [GeneratedRegex("^s-[0-9a-f]{40}$", RegexOptions.CultureInvariant)]
    private static partial Regex ReservedHashedId();
}
