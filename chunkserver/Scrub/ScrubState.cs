using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.ChunkServer.Scrub;

/// <summary>
/// Where the scrubber is and what it found, persisted in the first data dir (scrub-progress.json) so a pass
/// resumes where it stopped after a restart. Chunks are visited in id order; (ChunkId, Offset) is the next
/// byte to verify.
/// </summary>
public sealed record ScrubState(
    long PassStartedUnixMs,
    ulong ChunkId,
    long Offset,
    ulong BytesVerified,
    ulong BadFound,
    long LastCompletedUnixMs,
    ulong PassesCompleted)
{
    public const string FileName = "scrub-progress.json";

    public static ScrubState Load(string path, long nowUnixMs)
    {
        try
        {
            if (File.Exists(path))
            {
                return JsonSerializer.Deserialize(File.ReadAllText(path), ScrubStateJson.Default.ScrubState)
                    ?? new ScrubState(nowUnixMs, 0, 0, 0, 0, 0, 0);
            }
        }
        catch (Exception error) when (error is IOException or JsonException or UnauthorizedAccessException)
        {
            // A torn or unreadable progress file only costs a fresh pass.
        }
        return new ScrubState(nowUnixMs, 0, 0, 0, 0, 0, 0);
    }

    /// <summary>Writes to a temp file and renames it over the old one, so a crash leaves one whole file.</summary>
    public void Save(string path)
    {
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, ScrubStateJson.Default.ScrubState));
        File.Move(temp, path, overwrite: true);
    }
}

[JsonSerializable(typeof(ScrubState))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
internal sealed partial class ScrubStateJson : JsonSerializerContext;
