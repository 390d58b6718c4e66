using System.Text.RegularExpressions;

namespace FeitianK8s.Csi;

/// <summary>
/// The S3-compatible object store snapshot backups go to. Endpoint, bucket and region come from
/// <c>--snapshot-endpoint/-bucket/-region</c> or <c>FEITIAN_SNAPSHOT_ENDPOINT/_BUCKET/_REGION</c>
/// (flags win); credentials only from <c>AWS_ACCESS_KEY_ID</c> and <c>AWS_SECRET_ACCESS_KEY</c>,
/// never from flags (the command line is visible to every process on the node).
/// <see cref="ToString"/> says whether credentials are present, never what they are.
/// </summary>
public sealed partial class SnapshotTarget
{
    public const string EndpointEnv = "FEITIAN_SNAPSHOT_ENDPOINT";
    public const string BucketEnv = "FEITIAN_SNAPSHOT_BUCKET";
    public const string RegionEnv = "FEITIAN_SNAPSHOT_REGION";
    public const string AccessKeyIdEnv = "AWS_ACCESS_KEY_ID";
    public const string SecretAccessKeyEnv = "AWS_SECRET_ACCESS_KEY";

    public required Uri Endpoint { get; init; }

    public required string Bucket { get; init; }

    public string? Region { get; init; }

    public string? AccessKeyId { get; init; }

    public string? SecretAccessKey { get; init; }

    public bool HasCredentials => !string.IsNullOrEmpty(AccessKeyId) && !string.IsNullOrEmpty(SecretAccessKey);

    public override string ToString() =>
        $"{Endpoint} bucket {Bucket} region {Region ?? "(none)"} credentials {(HasCredentials ? "present" : "absent")}";

    /// <summary>
    /// The target from flags (<c>--snapshot-endpoint</c> etc., already split out of the command
    /// line) and the environment; null when none of endpoint, bucket or region is given.
    /// Throws <see cref="ArgumentException"/> with the reason when the target is incomplete or malformed.
    /// </summary>
    public static SnapshotTarget? From(IReadOnlyDictionary<string, string> flags, Func<string, string?> environment)
    {
        string? Setting(string flag, string env) =>
            flags.TryGetValue(flag, out var value) ? value : environment(env) is { Length: > 0 } fromEnv ? fromEnv : null;
        var endpoint = Setting("--snapshot-endpoint", EndpointEnv);
        var bucket = Setting("--snapshot-bucket", BucketEnv);
        var region = Setting("--snapshot-region", RegionEnv);
        if (endpoint is null && bucket is null && region is null)
        {
            return null;
        }
        if (string.IsNullOrWhiteSpace(endpoint) || !Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"snapshot endpoint '{endpoint}' (--snapshot-endpoint or {EndpointEnv}) is not an http(s) URL");
        }
        if (bucket is null || !BucketName().IsMatch(bucket))
        {
            throw new ArgumentException($"snapshot bucket '{bucket}' (--snapshot-bucket or {BucketEnv}) is not a bucket name (3-63 of a-z 0-9 . -)");
        }
        return new SnapshotTarget
        {
            Endpoint = uri,
            Bucket = bucket,
            Region = string.IsNullOrWhiteSpace(region) ? null : region,
            AccessKeyId = environment(AccessKeyIdEnv),
            SecretAccessKey = environment(SecretAccessKeyEnv),
        };
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    private static partial Regex BucketName();
}
