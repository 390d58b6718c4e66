using System.Text.Json.Nodes;

namespace FeitianK8s.Operator.Tests.Schema;

/// <summary>Finds the repository's folders and reads the CRDs from crds/.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "FeitianK8s.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException($"no FeitianK8s.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>The CRDs in crds/, by kind.</summary>
    public static Dictionary<string, JsonObject> CrdsByKind() =>
        Directory.GetFiles(Path("crds"), "*.yaml")
            .SelectMany(f => YamlToJson.ReadAll(File.ReadAllText(f)))
            .OfType<JsonObject>()
            .ToDictionary(c => c["spec"]!["names"]!["kind"]!.GetValue<string>());

    public static JsonObject SchemaOf(JsonObject crd) =>
        (JsonObject)crd["spec"]!["versions"]!.AsArray().Single(v => v!["storage"]!.GetValue<bool>())!["schema"]!["openAPIV3Schema"]!;
}
