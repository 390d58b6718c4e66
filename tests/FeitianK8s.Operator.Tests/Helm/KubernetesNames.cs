using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace FeitianK8s.Operator.Tests.Helm;

/// <summary>The API server's rules for object names, namespaces and labels (apimachinery's validation).</summary>
public static partial class KubernetesNames
{
    private static readonly HashSet<string> ClusterScoped = ["ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition", "StorageClass", "CSIDriver"];
    private static readonly HashSet<string> RbacKinds = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

    public static bool IsClusterScoped(string kind) => ClusterScoped.Contains(kind);

    /// <summary>Why the API server would refuse this name for this kind, or null.</summary>
    public static string? NameError(string kind, string name) => kind switch
    {
        // Services and namespaces become DNS labels; RBAC names are only path segments.
        "Service" => Dns1035Label(name),
        "Namespace" => Dns1123Label(name),
        _ when RbacKinds.Contains(kind) => name is "" or "." or ".." || name.Contains('/') || name.Contains('%') ? $"{name}: not a valid path segment name" : null,
        _ => Dns1123Subdomain(name),
    };

    public static string? Dns1123Label(string name) =>
        name.Length is 0 or > 63 || !Dns1123LabelPattern().IsMatch(name) ? $"{name}: must be a DNS-1123 label (at most 63 lowercase alphanumerics or '-')" : null;

    public static string? Dns1035Label(string name) =>
        name.Length is 0 or > 63 || !Dns1035LabelPattern().IsMatch(name) ? $"{name}: must be a DNS-1035 label (at most 63 chars, starting with a letter)" : null;

    public static string? Dns1123Subdomain(string name) =>
        name.Length is 0 or > 253 || !Dns1123SubdomainPattern().IsMatch(name) ? $"{name}: must be a DNS-1123 subdomain" : null;

    /// <summary>Errors of a labels or matchLabels map: qualified-name keys and string values of at most 63 chars.</summary>
    public static IEnumerable<string> LabelErrors(JsonObject? labels)
    {
        foreach (var (key, value) in labels ?? [])
        {
            var slash = key.LastIndexOf('/');
            var (prefix, name) = slash < 0 ? (null, key) : (key[..slash], key[(slash + 1)..]);
            if (prefix is not null && Dns1123Subdomain(prefix) is { } prefixError)
            {
                yield return $"label key {key}: prefix {prefixError}";
            }
            if (name.Length is 0 or > 63 || !LabelValuePattern().IsMatch(name))
            {
                yield return $"label key {key}: name part must be at most 63 alphanumerics, '-', '_' or '.'";
            }
            if (value?.GetValueKind() != JsonValueKind.String)
            {
                yield return $"label {key}: value {value?.ToJsonString() ?? "null"} is not a string";
            }
            else if (value.GetValue<string>() is var v && (v.Length > 63 || !LabelValuePattern().IsMatch(v)))
            {
                yield return $"label {key}: value '{v}' must be at most 63 alphanumerics, '-', '_' or '.'";
            }
        }
    }

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex Dns1123LabelPattern();

    [GeneratedRegex("^[a-z]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex Dns1035LabelPattern();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex Dns1123SubdomainPattern();

    [GeneratedRegex("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
    private static partial Regex LabelValuePattern();
}
