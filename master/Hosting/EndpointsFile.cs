using System.Text.Json;

namespace FeitianK8s.Master.Hosting;

/// <summary>Writes DIR/endpoints.json = {"grpc":..., "http":...} atomically (tmp + fsync + rename).</summary>
public static class EndpointsFile
{
    public const string FileName = "endpoints.json";

    public static string Write(string directory, string grpcAddress, string httpAddress)
    {
        var path = Path.Combine(directory, FileName);
        var tmp = path + ".tmp";
        var json = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["grpc"] = grpcAddress, ["http"] = httpAddress });
        using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(json);
            file.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        return path;
    }
}
