using System.Text.Json;

namespace FeitianK8s.Csi.Node;

public sealed record PublishRecord(string TargetPath, bool ReadOnly);

/// <summary>What the node knows about one staged volume; one JSON file per volume in the state dir.</summary>
public sealed record StagedVolume
{
    public required string VolumeId { get; init; }
    public required string StagingPath { get; init; }
    public required bool Block { get; init; }
    public string FsType { get; init; } = "";
    public IReadOnlyList<string> MountFlags { get; init; } = [];
    public bool ReadOnly { get; init; }
    public required string SocketPath { get; init; }
    public required string FuseDir { get; init; }
    public string LoopDevice { get; init; } = "";
    public int HostPid { get; init; }
    public int FusePid { get; init; }
    /// <summary>Kernel nbd device (e.g. /dev/nbd3) when the kernel driver is used instead of nbdfuse.</summary>
    public string NbdDevice { get; init; } = "";
    public IReadOnlyList<PublishRecord> Publishes { get; init; } = [];

    public string FuseFile => Path.Combine(FuseDir, "nbd");

    /// <summary>What the loop device sits on: the kernel nbd device, or the nbdfuse file.</summary>
    public string BackingPath => NbdDevice.Length > 0 ? NbdDevice : FuseFile;
}

/// <summary>
/// Persists <see cref="StagedVolume"/> records under the state dir. Writes go to a temp
/// file renamed over the old one, so a crash leaves either the old or the new record.
/// </summary>
public sealed class NodeStateStore
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
    private readonly string _dir;

    public NodeStateStore(string stateDir)
    {
        _dir = Path.Combine(stateDir, "volumes");
        Directory.CreateDirectory(_dir);
    }

    public StagedVolume? Get(string volumeId)
    {
        var path = PathOf(volumeId);
        return File.Exists(path) ? JsonSerializer.Deserialize<StagedVolume>(File.ReadAllText(path), Json) : null;
    }

    public IReadOnlyList<StagedVolume> All() =>
        Directory.EnumerateFiles(_dir, "*.json")
            .Select(f => JsonSerializer.Deserialize<StagedVolume>(File.ReadAllText(f), Json))
            .OfType<StagedVolume>()
            .ToList();

    public void Save(StagedVolume volume)
    {
        var path = PathOf(volume.VolumeId);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(volume, Json));
        File.Move(temp, path, overwrite: true);
    }

    public void Delete(string volumeId) => File.Delete(PathOf(volumeId));

    private string PathOf(string volumeId) => Path.Combine(_dir, Uri.EscapeDataString(volumeId) + ".json");
}
