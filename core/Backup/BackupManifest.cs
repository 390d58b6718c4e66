using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace FeitianK8s.Core.Backup;

/// <summary>One block of a backup: its index in the volume and the SHA-256 of its bytes (the object <c>blocks/SHA256</c>).</summary>
public sealed record BackupBlock(long Index, string Sha256);

/// <summary>
/// A backup: what it is of, and for every block index that is not all zeros the hash of its
/// bytes. Blocks left out read as zeros. <see cref="UploadedBytes"/> is what this backup sent;
/// the rest was already in the target. JSON, one object per backup (<c>backups/ID.json</c>).
/// </summary>
public sealed partial record BackupManifest(
    string Id,
    string Volume,
    string Snapshot,
    DateTimeOffset SnapshotCreatedAt,
    long SizeBytes,
    int BlockSize,
    long UploadedBytes,
    DateTimeOffset CreatedAt,
    IReadOnlyList<BackupBlock> Blocks)
{
    public const string FormatName = "feitian-backup/1";
    public const int MinBlockSize = 4096;
    public const int MaxBlockSize = 64 << 20;

    /// <summary>Largest volume a manifest may describe (1 PiB): a manifest saying more is not trusted to size a restored volume.</summary>
    public const long MaxSizeBytes = 1L << 50;

    /// <summary>Volume sizes are whole 4 KiB sectors, as the master requires.</summary>
    public const int SectorSize = 4096;

    /// <summary>Manifests larger than this are refused before parsing (a 1 TiB volume at 1 MiB blocks is about 90 MiB).</summary>
    public const int MaxManifestBytes = 256 << 20;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
        MaxDepth = 8,
    };

    public long BlockCount => BlockCountOf(SizeBytes, BlockSize);

    public static long BlockCountOf(long sizeBytes, int blockSize) => (sizeBytes + blockSize - 1) / blockSize;

    public byte[] Serialize() => JsonSerializer.SerializeToUtf8Bytes(new Wire
    {
        Format = FormatName,
        Id = Id,
        Volume = Volume,
        Snapshot = Snapshot,
        SnapshotCreatedAt = SnapshotCreatedAt,
        SizeBytes = SizeBytes,
        BlockSize = BlockSize,
        UploadedBytes = UploadedBytes,
        CreatedAt = CreatedAt,
        Blocks = Blocks.Select(b => (WireBlock?)new WireBlock { Index = b.Index, Sha256 = b.Sha256 }).ToList(),
    }, Json);

    /// <summary>Parses and checks a manifest; anything else (truncated, garbage, inconsistent) is a <see cref="BackupErrorKind.Corrupt"/> error naming <paramref name="source"/>.</summary>
    public static BackupManifest Parse(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.Length > MaxManifestBytes)
        {
            throw Corrupt(source, $"{bytes.Length} bytes is larger than any manifest ({MaxManifestBytes} bytes at most)");
        }
        Wire? wire;
        try
        {
            wire = JsonSerializer.Deserialize<Wire>(bytes, Json);
        }
        catch (JsonException e)
        {
            throw Corrupt(source, $"not a backup manifest (JSON error at byte {e.BytePositionInLine ?? 0} of line {(e.LineNumber ?? 0) + 1}: {e.Message.Split(" Path:")[0]})", e);
        }
        if (wire is null)
        {
            throw Corrupt(source, "not a backup manifest (JSON null)");
        }
        if (wire.Format != FormatName)
        {
            throw Corrupt(source, $"format is '{wire.Format}', expected '{FormatName}'");
        }
        if (!BackupTarget.IsBackupId(wire.Id ?? ""))
        {
            throw Corrupt(source, $"id '{wire.Id}' is not a backup id");
        }
        if (string.IsNullOrEmpty(wire.Volume) || string.IsNullOrEmpty(wire.Snapshot))
        {
            throw Corrupt(source, "volume or snapshot is missing");
        }
        if (!IsName(wire.Volume) || !IsName(wire.Snapshot))
        {
            throw Corrupt(source, $"volume or snapshot name is longer than {MaxNameLength} characters or has control characters");
        }
        if (wire.SizeBytes is not { } size || size <= 0 || size > MaxSizeBytes || size % SectorSize != 0)
        {
            throw Corrupt(source, $"sizeBytes {wire.SizeBytes} is not a volume size (a positive multiple of {SectorSize}, at most {MaxSizeBytes})");
        }
        if (wire.BlockSize is not { } blockSize || blockSize is < MinBlockSize or > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
        {
            throw Corrupt(source, $"blockSize {wire.BlockSize} is not a power of two between {MinBlockSize} and {MaxBlockSize}");
        }
        if (wire.UploadedBytes is not { } uploaded || uploaded < 0 || wire.CreatedAt is not { } createdAt || wire.Blocks is null)
        {
            throw Corrupt(source, "uploadedBytes, createdAt or blocks is missing");
        }
        if (uploaded > size)
        {
            throw Corrupt(source, $"uploadedBytes {uploaded} is more than the volume's {size} bytes");
        }
        var count = BlockCountOf(size, blockSize);
        var seen = new HashSet<long>();
        var blocks = new List<BackupBlock>(wire.Blocks.Count);
        foreach (var b in wire.Blocks)
        {
            if (b is null || b.Index is not { } index || index < 0 || index >= count || !seen.Add(index))
            {
                throw Corrupt(source, $"block index {b?.Index} is missing, repeated or outside the volume's {count} blocks");
            }
            if (b.Sha256 is null || !Sha256Hex().IsMatch(b.Sha256))
            {
                throw Corrupt(source, $"block {index}: '{b.Sha256}' is not a SHA-256 in lowercase hex");
            }
            blocks.Add(new BackupBlock(index, b.Sha256));
        }
        return new BackupManifest(wire.Id!, wire.Volume, wire.Snapshot, wire.SnapshotCreatedAt ?? DateTimeOffset.UnixEpoch,
            size, blockSize, uploaded, createdAt, blocks);
    }

    public static bool IsSha256(string text) => Sha256Hex().IsMatch(text);

    private const int MaxNameLength = 253;

    private static bool IsName(string name) => name.Length <= MaxNameLength && !name.Any(char.IsControl);

    private static BackupException Corrupt(string source, string why, Exception? inner = null) =>
        new(BackupErrorKind.Corrupt, $"backup manifest {source}: {why}", inner);

    [GeneratedRegex("^[0-9a-f]{64}$", RegexOptions.CultureInvariant)]
    private static partial Regex Sha256Hex();

    private sealed class Wire
    {
        public string? Format { get; set; }
        public string? Id { get; set; }
        public string? Volume { get; set; }
        public string? Snapshot { get; set; }
        public DateTimeOffset? SnapshotCreatedAt { get; set; }
        public long? SizeBytes { get; set; }
        public int? BlockSize { get; set; }
        public long? UploadedBytes { get; set; }
        public DateTimeOffset? CreatedAt { get; set; }
        public List<WireBlock?>? Blocks { get; set; }
    }

    private sealed class WireBlock
    {
        public long? Index { get; set; }
        public string? Sha256 { get; set; }
    }
}
