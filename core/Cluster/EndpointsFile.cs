using System.Text.Json;

namespace FeitianK8s.Core.Cluster;

/// <summary>The endpoints.json a server writes into its data dir once it is bound: {"id":..,"grpc":..,"http":..}.</summary>
public sealed record ServerEndpoints(string Id, string Grpc, string Http)
{
    public const string FileName = "endpoints.json";

    /// <summary>Null while the file is missing or not completely written yet.</summary>
    public static ServerEndpoints? TryRead(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var grpc = Address(root, "grpc");
            if (grpc is null)
            {
                return null;
            }
            var id = root.TryGetProperty("id", out var idValue) ? idValue.ToString() : "";
            return new ServerEndpoints(id, grpc, Address(root, "http") ?? "");
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Accepts "http://127.0.0.1:P", "127.0.0.1:P" or a bare port.</summary>
    private static string? Address(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value))
        {
            return null;
        }
        var text = value.ValueKind == JsonValueKind.Number ? value.GetInt32().ToString() : value.GetString();
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        if (int.TryParse(text, out var port))
        {
            return $"http://127.0.0.1:{port}";
        }
        return text.Contains("://", StringComparison.Ordinal) ? text : $"http://{text}";
    }

    /// <summary>Writes the file atomically and durably (tmp + fsync + rename), so a reader never sees half of it.</summary>
    public string Write(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        var temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(file, new Dictionary<string, string> { ["id"] = Id, ["grpc"] = Grpc, ["http"] = Http });
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        return path;
    }

    public int GrpcPort => new Uri(Grpc).Port;

    public int HttpPort => string.IsNullOrEmpty(Http) ? 0 : new Uri(Http).Port;
}
