using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.Core.Cluster;

/// <summary>DIR/cluster.json: how CLI commands find a local cluster from its directory.</summary>
public sealed record ClusterFile(
    [property: JsonPropertyName("masters")] IReadOnlyList<string> Masters,
    [property: JsonPropertyName("chunkServers")] IReadOnlyList<ClusterFileChunkServer> ChunkServers,
    [property: JsonPropertyName("masterPeers")] IReadOnlyList<ClusterFileMaster>? MasterPeers = null)
{
    public const string FileName = "cluster.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static ClusterFile Read(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"no local cluster in {dataDir}: {path} is missing (start one with `feitian up --data {dataDir}`)", path);
        }
        return JsonSerializer.Deserialize<ClusterFile>(File.ReadAllText(path), Json)
            ?? throw new InvalidDataException($"{path} is empty");
    }

    /// <summary>Writes through a temporary file and a rename, so readers never see half a file.</summary>
    public void Write(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json));
        File.Move(temp, path, overwrite: true);
    }
}

public sealed record ClusterFileChunkServer(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("node")] string Node,
    [property: JsonPropertyName("rack")] string Rack,
    [property: JsonPropertyName("grpc")] string Grpc,
    [property: JsonPropertyName("http")] string Http);

/// <summary>One master of a local cluster: its gRPC address and its Raft endpoint (host:port).</summary>
public sealed record ClusterFileMaster(
    [property: JsonPropertyName("grpc")] string Grpc,
    [property: JsonPropertyName("raft")] string Raft);
