using System.Globalization;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// Where a chunk lives: <c>DIR/chunks/ID.data</c> (the bytes), <c>ID.crc</c> (two tail slots, then a
/// uint32 CRC32C per full block; see ChecksumFileLayout) and <c>ID.meta</c> (epoch, sealed flag). The meta file is the commit point: a chunk
/// exists exactly when its meta file exists; data or crc files without one are leftovers.
/// </summary>
internal sealed record ChunkFiles(string Directory, ulong ChunkId)
{
    public const string SubDirectory = "chunks";
    public const string MetaExtension = ".meta";

    private string Stem => Path.Combine(Directory, ChunkId.ToString("x16", CultureInfo.InvariantCulture));

    public string Data => Stem + ".data";
    public string Checksums => Stem + ".crc";
    public string Meta => Stem + MetaExtension;
    public string CopyData => Stem + ".data.copying";
    public string CopyChecksums => Stem + ".crc.copying";

    public static bool TryParseId(string fileName, out ulong id) =>
        ulong.TryParse(Path.GetFileNameWithoutExtension(fileName), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out id)
        && Path.GetFileNameWithoutExtension(fileName).Length == 16;
}
