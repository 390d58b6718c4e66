using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace FeitianK8s.Operator.Tests.Schema;

/// <summary>
/// Validates a value against the subset of OpenAPI v3 structural schema our CRDs use: type,
/// properties, additionalProperties, items, required, enum, minimum/maximum, minLength/maxLength,
/// minItems, pattern, default (applied before validation, as the API server does) and
/// x-kubernetes-preserve-unknown-fields. Unknown fields are errors (kubectl's strict field
/// validation). CEL rules (x-kubernetes-validations) are not evaluated here.
/// </summary>
public static class StructuralSchemaValidator
{
    public static List<string> Validate(JsonObject schema, JsonNode? value)
    {
        var errors = new List<string>();
        Check(schema, value, "", errors);
        return errors;
    }

    private static void Check(JsonObject schema, JsonNode? value, string path, List<string> errors)
    {
        var at = path.Length == 0 ? "<root>" : path;
        if (value is null)
        {
            return;
        }
        var type = schema["type"]?.GetValue<string>();
        var kind = value.GetValueKind();
        var typeOk = type switch
        {
            null => true,
            "object" => kind == JsonValueKind.Object,
            "array" => kind == JsonValueKind.Array,
            "string" => kind == JsonValueKind.String,
            "boolean" => kind is JsonValueKind.True or JsonValueKind.False,
            "integer" => kind == JsonValueKind.Number && IsInteger(value),
            "number" => kind == JsonValueKind.Number,
            _ => throw new InvalidOperationException($"schema type '{type}' at {at} is not supported"),
        };
        if (!typeOk)
        {
            errors.Add($"{at}: Invalid value: {value.ToJsonString()}: must be of type {type}");
            return;
        }
        if (schema["enum"] is JsonArray allowed && !allowed.Any(a => JsonNode.DeepEquals(a, value)))
        {
            errors.Add($"{at}: Unsupported value: {value.ToJsonString()}: supported values: {string.Join(", ", allowed.Select(a => a!.ToJsonString()))}");
        }
        switch (kind)
        {
            case JsonValueKind.Number:
                var n = Num(value);
                if (schema["minimum"] is { } min && n < Num(min))
                {
                    errors.Add($"{at}: Invalid value: {n}: {at} in body should be greater than or equal to {min}");
                }
                if (schema["maximum"] is { } max && n > Num(max))
                {
                    errors.Add($"{at}: Invalid value: {n}: {at} in body should be less than or equal to {max}");
                }
                break;
            case JsonValueKind.String:
                var s = value.GetValue<string>();
                if (schema["minLength"] is { } minLen && s.Length < Num(minLen))
                {
                    errors.Add($"{at}: Invalid value: \"{s}\": should be at least {minLen} chars long");
                }
                if (schema["maxLength"] is { } maxLen && s.Length > Num(maxLen))
                {
                    errors.Add($"{at}: Too long: may not be longer than {maxLen}");
                }
                if (schema["pattern"]?.GetValue<string>() is { } pattern && !Regex.IsMatch(s, pattern))
                {
                    errors.Add($"{at}: Invalid value: \"{s}\": {at} in body should match '{pattern}'");
                }
                break;
            case JsonValueKind.Array:
                var array = (JsonArray)value;
                if (schema["minItems"] is { } minItems && array.Count < Num(minItems))
                {
                    errors.Add($"{at}: Invalid value: {array.Count}: {at} in body should have at least {minItems} items");
                }
                if (schema["items"] is JsonObject itemSchema)
                {
                    for (var i = 0; i < array.Count; i++)
                    {
                        Check(itemSchema, array[i], $"{path}[{i}]", errors);
                    }
                }
                break;
            case JsonValueKind.Object:
                CheckObject(schema, (JsonObject)value, path, at, errors);
                break;
        }
    }

    private static void CheckObject(JsonObject schema, JsonObject obj, string path, string at, List<string> errors)
    {
        var properties = schema["properties"] as JsonObject;
        if (properties is not null)
        {
            foreach (var (name, propSchema) in properties)
            {
                if (!obj.ContainsKey(name) && propSchema?["default"] is { } def)
                {
                    obj[name] = def.DeepClone();
                }
            }
        }
        foreach (var required in (schema["required"] as JsonArray ?? []).Select(r => r!.GetValue<string>()))
        {
            if (obj[required] is null)
            {
                errors.Add($"{Join(path, required)}: Required value");
            }
        }
        var preserve = schema["x-kubernetes-preserve-unknown-fields"]?.GetValue<bool>() == true;
        var additional = schema["additionalProperties"] as JsonObject;
        foreach (var (name, child) in obj.ToList())
        {
            var childPath = Join(path, name);
            if (properties?[name] is JsonObject childSchema)
            {
                Check(childSchema, child, childPath, errors);
            }
            else if (additional is not null)
            {
                Check(additional, child, childPath, errors);
            }
            else if (!preserve && properties is not null)
            {
                errors.Add($"{childPath}: unknown field \"{childPath}\"");
            }
        }
    }

    private static double Num(JsonNode n) =>
        n.AsValue().TryGetValue<long>(out var l) ? l : n.AsValue().TryGetValue<int>(out var i) ? i : n.GetValue<double>();

    private static bool IsInteger(JsonNode value) =>
        value.AsValue().TryGetValue<long>(out _) || (value.AsValue().TryGetValue<double>(out var d) && Math.Floor(d) == d);

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";
}
