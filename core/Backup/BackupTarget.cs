using System.Text.RegularExpressions;

namespace FeitianK8s.Core.Backup;

/// <summary>
/// Where backups live: <c>s3://BUCKET[/PREFIX]</c>. Objects: <c>PREFIX/blocks/SHA256</c>
/// (content-addressed block data, shared by every backup of every volume in the target) and
/// <c>PREFIX/backups/ID.json</c> (one manifest per backup; a backup exists once its manifest does).
/// </summary>
public sealed partial record BackupTarget(string Bucket, string Prefix)
{
    public const string Scheme = "s3://";

    public string BlocksPrefix => $"{Prefix}blocks/";
    public string ManifestsPrefix => $"{Prefix}backups/";

    public string BlockKey(string sha256) => BlocksPrefix + sha256;
    public string ManifestKey(string id) => $"{ManifestsPrefix}{id}.json";

    public override string ToString() => Prefix.Length == 0 ? $"{Scheme}{Bucket}" : $"{Scheme}{Bucket}/{Prefix.TrimEnd('/')}";

    /// <summary>Parses <c>s3://BUCKET[/PREFIX]</c>; the bucket must be a valid S3 bucket name, the prefix plain path segments.</summary>
    public static BackupTarget Parse(string? text)
    {
        const string example = "expected s3://BUCKET[/PREFIX], e.g. s3://backups/cluster-a";
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, $"the backup target is empty: {example}");
        }
        if (!text.StartsWith(Scheme, StringComparison.Ordinal))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, $"backup target '{text}' does not start with {Scheme}: {example}");
        }
        var rest = text[Scheme.Length..];
        var slash = rest.IndexOf('/');
        var bucket = slash < 0 ? rest : rest[..slash];
        var prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
        if (!BucketName().IsMatch(bucket) || bucket.Contains("..", StringComparison.Ordinal))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument,
                $"backup target '{text}': '{bucket}' is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit); {example}");
        }
        if (prefix.Length > 0 && (prefix.Length > 512 || !prefix.Split('/').All(s => PrefixSegment().IsMatch(s) && s is not "." and not "..")))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument,
                $"backup target '{text}': prefix '{prefix}' must be '/'-separated names of letters, digits, '.', '_' and '-'");
        }
        return new BackupTarget(bucket, prefix.Length == 0 ? "" : prefix + "/");
    }

    /// <summary>Backup ids are made by <see cref="NewBackupId"/>; anything else is refused before it reaches a key.</summary>
    public static bool IsBackupId(string id) => BackupId().IsMatch(id);

    public static void CheckBackupId(string id)
    {
        if (!IsBackupId(id))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument,
                $"'{id}' is not a backup id (1-128 letters, digits, '.', '_' and '-'; `feitian backup ls` lists them)");
        }
    }

    public static string NewBackupId(DateTimeOffset at) =>
        $"bk-{at.UtcDateTime:yyyyMMdd-HHmmss}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3))}";

    [GeneratedRegex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", RegexOptions.CultureInvariant)]
    private static partial Regex BucketName();

    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$", RegexOptions.CultureInvariant)]
    private static partial Regex PrefixSegment();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", RegexOptions.CultureInvariant)]
    private static partial Regex BackupId();
}
