using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace FeitianK8s.Core.Backup;

/// <summary>Where the object store is and how to sign for it; the credentials come from the environment only.</summary>
public sealed record BackupStoreOptions(string Endpoint, string Region = BackupStoreOptions.DefaultRegion)
{
    public const string DefaultRegion = "us-east-1";
    public const string AccessKeyVariable = "AWS_ACCESS_KEY_ID";
    public const string SecretKeyVariable = "AWS_SECRET_ACCESS_KEY";

    /// <summary>Requests in flight at once (uploads, downloads, deletes).</summary>
    public int Parallelism { get; init; } = 8;

    /// <summary>
    /// A marker (<see cref="BackupMarkers"/>) not refreshed for this long belongs to a process that is
    /// gone: others ignore it, and its holder stops before relying on it. Refreshed every tenth of it.
    /// </summary>
    public TimeSpan MarkerStaleAfter { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>An object in the target as listed: key, size and when the store last wrote it (by the store's clock).</summary>
public sealed record StoredObject(string Key, long Size, DateTimeOffset LastModified);

/// <summary>
/// The S3 calls backups make, over AWSSDK.S3 with path-style addressing (what S3-compatible
/// servers expect). Errors become <see cref="BackupException"/>s naming the key and the endpoint;
/// credentials never appear in them.
/// </summary>
public sealed class BackupStore : IDisposable
{
    private readonly IAmazonS3 _s3;

    private BackupStore(IAmazonS3 s3, BackupTarget target, BackupStoreOptions options)
    {
        _s3 = s3;
        Target = target;
        Options = options;
    }

    public BackupTarget Target { get; }
    public BackupStoreOptions Options { get; }

    /// <summary>Connects to <paramref name="options"/>'s endpoint with the credentials of <c>AWS_ACCESS_KEY_ID</c>/<c>AWS_SECRET_ACCESS_KEY</c>.</summary>
    public static BackupStore Open(BackupTarget target, BackupStoreOptions options)
    {
        if (!Uri.TryCreate(options.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https") || endpoint.Host.Length == 0)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, $"endpoint '{options.Endpoint}' is not an http(s) URL, e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000");
        }
        if (string.IsNullOrWhiteSpace(options.Region))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "--region is empty (default us-east-1)");
        }
        var key = Environment.GetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable);
        var secret = Environment.GetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable);
        if (string.IsNullOrEmpty(key) || string.IsNullOrEmpty(secret))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument,
                $"set {BackupStoreOptions.AccessKeyVariable} and {BackupStoreOptions.SecretKeyVariable} to the object store's credentials");
        }
        var config = new AmazonS3Config
        {
            ServiceURL = endpoint.ToString(),
            AuthenticationRegion = options.Region,
            ForcePathStyle = true,
            // Integrity is ours: every block is addressed by its SHA-256 and verified on restore.
            // Trailing-checksum uploads are not understood by every S3-compatible server.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxErrorRetry = 3,
            Timeout = TimeSpan.FromMinutes(2),
        };
        return new BackupStore(new AmazonS3Client(new BasicAWSCredentials(key, secret), config), target, options);
    }

    public async Task PutAsync(string key, ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        using var stream = new MemoryStream(bytes.ToArray(), writable: false);
        await CallAsync("put", key, () => _s3.PutObjectAsync(new PutObjectRequest
        {
            BucketName = Target.Bucket,
            Key = key,
            InputStream = stream,
            AutoCloseStream = false,
            UseChunkEncoding = false,
            ContentType = "application/octet-stream",
        }, ct));
    }

    /// <summary>The object's bytes, or null when it does not exist.</summary>
    public async Task<byte[]?> TryGetAsync(string key, CancellationToken ct)
    {
        try
        {
            return await CallAsync("get", key, async () =>
            {
                using var response = await _s3.GetObjectAsync(new GetObjectRequest { BucketName = Target.Bucket, Key = key }, ct);
                using var buffer = new MemoryStream();
                try
                {
                    await response.ResponseStream.CopyToAsync(buffer, ct);
                }
                catch (AmazonClientException e)
                {
                    // The SDK checks the body against the MD5 the store answered with (its ETag).
                    throw new BackupException(BackupErrorKind.Corrupt, $"get s3://{Target.Bucket}/{key}: the bytes read do not match the store's own checksum ({e.Message})", e);
                }
                return buffer.ToArray();
            });
        }
        catch (BackupException e) when (e.Kind == BackupErrorKind.NotFound && e.InnerException is AmazonS3Exception { ErrorCode: "NoSuchKey" })
        {
            return null;
        }
    }

    /// <summary>Every key under <paramref name="prefix"/>, with its size.</summary>
    public async Task<Dictionary<string, long>> ListAsync(string prefix, CancellationToken ct) =>
        (await ListObjectsAsync(prefix, ct)).ToDictionary(o => o.Key, o => o.Size, StringComparer.Ordinal);

    /// <summary>Every object under <paramref name="prefix"/>, with its size and the store's last-modified time (the store's clock).</summary>
    public async Task<List<StoredObject>> ListObjectsAsync(string prefix, CancellationToken ct)
    {
        var objects = new List<StoredObject>();
        string? after = null;
        while (true)
        {
            // ListObjects (v1) with the last key seen as marker: every S3-compatible store has it, and it
            // needs no continuation tokens (s3rver 3.7 fails to make those on Node.js 20 and later).
            var page = await CallAsync("list", prefix, () => _s3.ListObjectsAsync(new ListObjectsRequest
            {
                BucketName = Target.Bucket,
                Prefix = prefix,
                Marker = after,
            }, ct));
            var listed = page.S3Objects ?? [];
            foreach (var o in listed)
            {
                objects.Add(new StoredObject(o.Key, o.Size ?? 0,
                    o.LastModified is { } at ? new DateTimeOffset(at.ToUniversalTime(), TimeSpan.Zero) : DateTimeOffset.MinValue));
            }
            if (page.IsTruncated != true || listed.Count == 0)
            {
                return objects;
            }
            after = listed[^1].Key;
        }
    }

    public async Task DeleteAsync(string key, CancellationToken ct) =>
        await CallAsync("delete", key, () => _s3.DeleteObjectAsync(new DeleteObjectRequest { BucketName = Target.Bucket, Key = key }, ct));

    private async Task<T> CallAsync<T>(string what, string key, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            var message = e.ErrorCode == "NoSuchBucket"
                ? $"bucket '{Target.Bucket}' does not exist at {Options.Endpoint} (create it first)"
                : $"{what} s3://{Target.Bucket}/{key}: not found at {Options.Endpoint}";
            throw new BackupException(BackupErrorKind.NotFound, message, e);
        }
        catch (AmazonS3Exception e)
        {
            throw new BackupException(BackupErrorKind.Unavailable,
                $"{what} s3://{Target.Bucket}/{key} at {Options.Endpoint} failed: {e.ErrorCode ?? e.StatusCode.ToString()}: {e.Message}", e);
        }
        catch (AmazonServiceException e)
        {
            throw new BackupException(BackupErrorKind.Unavailable, $"{what} s3://{Target.Bucket}/{key} at {Options.Endpoint} failed: {e.Message}", e);
        }
        catch (Exception e) when (e is HttpRequestException or AmazonClientException or IOException || (e is TaskCanceledException && e.InnerException is TimeoutException))
        {
            throw new BackupException(BackupErrorKind.Unavailable, $"cannot reach the object store at {Options.Endpoint} ({what} s3://{Target.Bucket}/{key}): {e.Message}", e);
        }
    }

    public void Dispose() => _s3.Dispose();
}
