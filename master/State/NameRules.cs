using System.Text.RegularExpressions;

namespace FeitianK8s.Master.State;

/// <summary>Validation of file paths, volume names and other identifiers received from clients.</summary>
public static partial class NameRules
{
    public const int MaxPathLength = 4096;
    public const int MaxComponentLength = 255;
    public const int MaxIdLength = 253;
    public const int MaxVolumeNameLength = 253;
    public const int MaxLabels = 64;
    public const int MaxLabelKeyLength = 317;
    public const int MaxLabelValueLength = 1024;
    public const string VolumesRoot = "/volumes";

    /// <summary>Checks a file path: absolute, slash-separated, no empty, "." or ".." component, no NUL.</summary>
    public static MasterError? CheckFilePath(string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            return MasterError.Invalid("path is empty");
        }
        if (path.Length > MaxPathLength)
        {
            return MasterError.Invalid($"path is longer than {MaxPathLength} characters");
        }
        if (path[0] != '/')
        {
            return MasterError.Invalid($"path '{path}' is not absolute");
        }
        if (path == "/")
        {
            return MasterError.Invalid("path '/' is the root directory, not a file");
        }
        if (path.Contains('\0'))
        {
            return MasterError.Invalid("path contains a NUL character");
        }
        foreach (var component in path[1..].Split('/'))
        {
            if (component.Length == 0)
            {
                return MasterError.Invalid($"path '{path}' has an empty component");
            }
            if (component is "." or "..")
            {
                return MasterError.Invalid($"path '{path}' has a '{component}' component");
            }
            if (component.Length > MaxComponentLength)
            {
                return MasterError.Invalid($"path '{path}' has a component longer than {MaxComponentLength} characters");
            }
        }
        return null;
    }

    /// <summary>Normalizes a directory for listing: "" and "/" are the root (returns "/"); otherwise a valid path.</summary>
    public static MasterError? CheckDirectory(string path, out string directory)
    {
        directory = path is "" or "/" ? "/" : path.TrimEnd('/');
        if (directory == "/")
        {
            return null;
        }
        return directory.Length == 0 ? MasterError.Invalid($"path '{path}' is not a directory path") : CheckFilePath(directory);
    }

    /// <summary>Volume names are DNS-1123 subdomains: lowercase alphanumerics, '-' and '.', alphanumeric at both ends.</summary>
    public static MasterError? CheckVolumeName(string name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return MasterError.Invalid("volume name is empty");
        }
        if (name.Length > MaxVolumeNameLength)
        {
            return MasterError.Invalid($"volume name is longer than {MaxVolumeNameLength} characters");
        }
        return Dns1123Subdomain().IsMatch(name)
            ? null
            : MasterError.Invalid($"volume name '{name}' is not a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', alphanumeric at both ends)");
    }

    public static MasterError? CheckId(string what, string value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return MasterError.Invalid($"{what} is empty");
        }
        if (value.Length > MaxIdLength)
        {
            return MasterError.Invalid($"{what} is longer than {MaxIdLength} characters");
        }
        return value.Any(char.IsControl) ? MasterError.Invalid($"{what} contains control characters") : null;
    }

    public static string VolumeDirectory(string name) => $"{VolumesRoot}/{name}";

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1123Subdomain();
}
