using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using FeitianK8s.Operator.Tests.Schema;

namespace FeitianK8s.Operator.Tests.Helm;

/// <summary>One manifest of `helm template`'s output: the template file it came from, its text and its parsed object.</summary>
public sealed record RenderedDocument(string Source, string Text, JsonObject Object)
{
    public string Kind => Object["kind"]?.GetValue<string>() ?? "";
    public string Name => Object["metadata"]?["name"]?.GetValue<string>() ?? "";
    public string? Namespace => Object["metadata"]?["namespace"]?.GetValue<string>();
}

/// <summary>The manifests of one render, in the order Helm would install them.</summary>
public sealed partial class RenderedChart(IReadOnlyList<RenderedDocument> documents)
{
    public IReadOnlyList<RenderedDocument> Documents { get; } = documents;

    public IEnumerable<RenderedDocument> OfKind(string kind) => Documents.Where(d => d.Kind == kind);

    public RenderedDocument Single(string kind) => Assert.Single(OfKind(kind));

    /// <summary>Splits on helm template's "---\n# Source: FILE\n" headers; each part must be exactly one YAML document.</summary>
    public static RenderedChart Parse(string output)
    {
        var headers = SourceHeader().Matches(output);
        Assert.True(headers.Count > 0 ? headers[0].Index == 0 : output.Trim().Length == 0, $"not helm template output:\n{output}");
        var documents = new List<RenderedDocument>();
        for (var i = 0; i < headers.Count; i++)
        {
            var start = headers[i].Index + headers[i].Length;
            var end = i + 1 < headers.Count ? headers[i + 1].Index : output.Length;
            var text = output[start..end];
            var parsed = YamlToJson.ReadAll(text);
            var source = headers[i].Groups["file"].Value;
            Assert.True(parsed.Count == 1 && parsed[0] is JsonObject, $"{source}: a manifest must be one YAML mapping:\n{text}");
            documents.Add(new RenderedDocument(source, text, (JsonObject)parsed[0]!));
        }
        return new RenderedChart(documents);
    }

    [GeneratedRegex(@"^---\n# Source: (?<file>\S+)\n", RegexOptions.Multiline)]
    private static partial Regex SourceHeader();
}
