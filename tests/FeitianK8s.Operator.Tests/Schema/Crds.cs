using System.Text.Json.Nodes;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests.Schema;

/// <summary>Finds the repository's folders and reads the CRDs from crds/.</summary>
public static class Repo
{
    public static string Root => RepositoryPaths.Root;

    public static string Path(params string[] parts) => RepositoryPaths.Combine(parts);

    /// <summary>The CRDs in crds/, by kind.</summary>
    public static Dictionary<string, JsonObject> CrdsByKind() =>
        Directory.GetFiles(Path("crds"), "*.yaml")
            .SelectMany(f => YamlToJson.ReadAll(File.ReadAllText(f)))
            .OfType<JsonObject>()
            .ToDictionary(c => c["spec"]!["names"]!["kind"]!.GetValue<string>());

    public static JsonObject SchemaOf(JsonObject crd) =>
        (JsonObject)crd["spec"]!["versions"]!.AsArray().Single(v => v!["storage"]!.GetValue<bool>())!["schema"]!["openAPIV3Schema"]!;
}
