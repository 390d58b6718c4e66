using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// The durable part of a chunk's state besides its bytes. Epoch only grows (fencing); once sealed, the
/// chunk never changes length again. The block size is the chunk's own, so a server restarted with
/// another --block-size still reads its old chunks.
/// </summary>
internal sealed record ChunkMeta(
    [property: JsonPropertyName("epoch")] ulong Epoch,
    [property: JsonPropertyName("sealed")] bool Sealed,
    [property: JsonPropertyName("sealedLength")] long SealedLength,
    [property: JsonPropertyName("maxLength")] long MaxLength,
    [property: JsonPropertyName("blockSize")] int BlockSize)
{
    public static ChunkMeta Load(string path)
    {
        var meta = JsonSerializer.Deserialize<ChunkMeta>(File.ReadAllBytes(path))
            ?? throw new InvalidDataException($"chunk meta file {path} is empty");
        if (meta.MaxLength <= 0 || meta.SealedLength < 0 || meta.BlockSize < 512)
        {
            throw new InvalidDataException(
                $"chunk meta file {path} has invalid sizes (maxLength {meta.MaxLength}, sealedLength {meta.SealedLength}, blockSize {meta.BlockSize})");
        }
        return meta;
    }

    /// <summary>Writes the meta durably: temp file, fsync, rename over the old one, fsync the directory.</summary>
    public void Save(string path)
    {
        var tmp = path + ".tmp";
        try
        {
            using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(stream, this);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
            DirectorySync.Flush(Path.GetDirectoryName(path)!);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
