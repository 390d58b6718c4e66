using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// <c>spec.snapshotTarget</c> as environment variables of the CSI controller's driver container (and as the
/// masters' --backup-target flags with the same credentials, for the web console's backup list).
/// Credentials are only ever references to the Secret (resolved by the kubelet): the operator
/// never reads, copies or logs their values.
/// </summary>
public static partial class SnapshotTargetEnv
{
    public const string Endpoint = "FEITIAN_SNAPSHOT_ENDPOINT";
    public const string Bucket = "FEITIAN_SNAPSHOT_BUCKET";
    public const string Region = "FEITIAN_SNAPSHOT_REGION";
    public const string AccessKeyId = "AWS_ACCESS_KEY_ID";
    public const string SecretAccessKey = "AWS_SECRET_ACCESS_KEY";

    /// <summary>Keys of <c>spec.snapshotTarget.credentialsSecret</c>.</summary>
    public const string AccessKeyIdKey = "accessKeyId";
    public const string SecretAccessKeyKey = "secretAccessKey";

    public static IReadOnlyList<string> Errors(SnapshotTargetSpec? target)
    {
        var errors = new List<string>();
        if (target is null)
        {
            return errors;
        }
        if (!Uri.TryCreate(target.Endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"spec.snapshotTarget.endpoint '{target.Endpoint}' is not an http(s) URL");
        }
        if (string.IsNullOrWhiteSpace(target.Bucket))
        {
            errors.Add("spec.snapshotTarget.bucket must not be empty");
        }
        else if (!BucketName().IsMatch(target.Bucket) || target.Bucket.Contains("..", StringComparison.Ordinal))
        {
            // The CSI driver and the masters (--backup-target) refuse to start with such a bucket.
            errors.Add($"spec.snapshotTarget.bucket '{target.Bucket}' is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)");
        }
        if (!string.IsNullOrWhiteSpace(target.Region) && !RegionName().IsMatch(target.Region))
        {
            errors.Add($"spec.snapshotTarget.region '{target.Region}' is not a region name (letters, digits and '-', e.g. us-east-1)");
        }
        return errors;
    }

    /// <summary>
    /// The variables for the target, none without one. The Secret references are optional: a
    /// missing Secret must not keep the CSI controller (volume provisioning) from starting; the
    /// driver logs that it has no credentials instead. Throws <see cref="ArgumentException"/> on an invalid target.
    /// </summary>
    public static IReadOnlyList<V1EnvVar> For(SnapshotTargetSpec? target)
    {
        var errors = Errors(target);
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }
        if (target is null)
        {
            return [];
        }
        var env = new List<V1EnvVar>
        {
            new() { Name = Endpoint, Value = target.Endpoint },
            new() { Name = Bucket, Value = target.Bucket },
        };
        if (!string.IsNullOrWhiteSpace(target.Region))
        {
            env.Add(new V1EnvVar { Name = Region, Value = target.Region });
        }
        if (!string.IsNullOrWhiteSpace(target.CredentialsSecret))
        {
            env.Add(SecretEnv(AccessKeyId, target.CredentialsSecret, AccessKeyIdKey));
            env.Add(SecretEnv(SecretAccessKey, target.CredentialsSecret, SecretAccessKeyKey));
        }
        return env;
    }

    /// <summary>
    /// The masters' console lists the backups in the same target: its flags, none without one
    /// (the target is valid: <see cref="Errors"/> ran in the spec validation).
    /// </summary>
    public static IReadOnlyList<string> MasterArgs(SnapshotTargetSpec? target)
    {
        if (target is null || Errors(target).Count > 0)
        {
            return [];
        }
        var args = new List<string> { "--backup-target", $"s3://{target.Bucket}", "--backup-endpoint", target.Endpoint };
        if (!string.IsNullOrWhiteSpace(target.Region))
        {
            args.AddRange(["--backup-region", target.Region]);
        }
        return args;
    }

    /// <summary>The credentials Secret as the masters' environment (optional references: a missing Secret only makes /api/backups answer 502).</summary>
    public static IReadOnlyList<V1EnvVar> CredentialsEnv(SnapshotTargetSpec? target) =>
        target is null || string.IsNullOrWhiteSpace(target.CredentialsSecret)
            ? []
            : [SecretEnv(AccessKeyId, target.CredentialsSecret, AccessKeyIdKey), SecretEnv(SecretAccessKey, target.CredentialsSecret, SecretAccessKeyKey)];

    private static V1EnvVar SecretEnv(string name, string secret, string key) => new()
    {
        Name = name,
        ValueFrom = new V1EnvVarSource { SecretKeyRef = new V1SecretKeySelector { Name = secret, Key = key, Optional = true } },
    };

    [System.Text.RegularExpressions.GeneratedRegex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex BucketName();

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9-]{0,63}$", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex RegionName();
}
