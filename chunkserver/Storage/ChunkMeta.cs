using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// The durable part of a chunk's state besides its bytes. Epoch only grows (fencing); once sealed, the
/// chunk never changes length again.
/// </summary>
internal sealed record ChunkMeta(
    [property: JsonPropertyName("epoch")] ulong Epoch,
    [property: JsonPropertyName("sealed")] bool Sealed,
    [property: JsonPropertyName("sealedLength")] long SealedLength,
    [property: JsonPropertyName("maxLength")] long MaxLength)
{
    public static ChunkMeta Load(string path)
    {
        var meta = JsonSerializer.Deserialize<ChunkMeta>(File.ReadAllBytes(path))
            ?? throw new InvalidDataException($"chunk meta file {path} is empty");
        if (meta.MaxLength <= 0 || meta.SealedLength < 0)
        {
            throw new InvalidDataException($"chunk meta file {path} has invalid lengths (maxLength {meta.MaxLength}, sealedLength {meta.SealedLength})");
        }
        return meta;
    }

    /// <summary>Writes the meta durably: temp file, fsync, rename over the old one.</summary>
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
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
