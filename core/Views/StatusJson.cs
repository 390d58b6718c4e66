using System.Text.Json;
using System.Text.Json.Serialization;

namespace FeitianK8s.Core.Views;

/// <summary>The JSON form of every `--json` document, shared by the CLI and the master's console API.</summary>
public static class StatusJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);
}
