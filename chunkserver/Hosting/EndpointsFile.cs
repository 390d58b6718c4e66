using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary><c>endpoints.json</c> in the first data dir: how launchers (e.g. <c>feitian up</c>) find a started server.</summary>
public sealed record EndpointsFile(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("grpc")] string Grpc,
    [property: JsonPropertyName("http")] string Http)
{
    public const string FileName = "endpoints.json";

    public void Write(string dataDir) => AtomicFile.Write(Path.Combine(dataDir, FileName), JsonSerializer.Serialize(this));

    public static EndpointsFile Read(string dataDir) =>
        JsonSerializer.Deserialize<EndpointsFile>(File.ReadAllText(Path.Combine(dataDir, FileName)))
        ?? throw new InvalidDataException($"{Path.Combine(dataDir, FileName)} is empty");
}
