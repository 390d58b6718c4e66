using Grpc.Core;

namespace FeitianK8s.Core.Common;

/// <summary>
/// Machine-readable reasons carried next to a gRPC status in the
/// <see cref="FeitianStatus.ReasonTrailer"/> trailer, so callers classify errors by
/// code and reason, never by message text.
/// </summary>
public static class ErrorReasons
{
    public const string StaleEpoch = "stale-epoch";
    public const string WrongOffset = "wrong-offset";
    public const string ChecksumMismatch = "checksum-mismatch";
    public const string Sealed = "sealed";
    public const string DiskFull = "disk-full";
    public const string TooLarge = "too-large";
    public const string NotFound = "not-found";
    public const string Corrupt = "corrupt";
    public const string InvalidArgument = "invalid-argument";
    public const string AlreadyExists = "already-exists";
    public const string NoChunkServers = "no-chunk-servers";
    public const string ChunkFull = "chunk-full";
    /// <summary>UNAVAILABLE from a master that is not the Raft leader; <see cref="FeitianStatus.LeaderTrailer"/> names the leader when known.</summary>
    public const string NotLeader = "not-leader";
    /// <summary>
    /// The master (re)started or became leader moments ago and its chunk servers have not all reported
    /// yet (the report grace period): Unavailable, retry shortly.
    /// </summary>
    public const string ChunkServersReporting = "chunk-servers-reporting";
}

public static class FeitianStatus
{
    public const string ReasonTrailer = "feitian-reason";
    /// <summary>On a wrong-offset append: the chunk's current length.</summary>
    public const string ChunkLengthTrailer = "feitian-chunk-length";
    /// <summary>On a not-leader refusal: the leader's gRPC address (http://host:port); absent while unknown.</summary>
    public const string LeaderTrailer = "feitian-leader";

    public static RpcException Error(StatusCode code, string reason, string message, params (string Key, string Value)[] trailers)
    {
        var metadata = new Metadata { { ReasonTrailer, reason } };
        foreach (var (key, value) in trailers)
        {
            metadata.Add(key, value);
        }
        return new RpcException(new Status(code, message), metadata);
    }

    public static string? ReasonOf(RpcException error) => error.Trailers.GetValue(ReasonTrailer);

    public static bool HasReason(RpcException error, string reason) => ReasonOf(error) == reason;

    public static string? TrailerOf(RpcException error, string key) => error.Trailers.GetValue(key);

    /// <summary>True when a master refused because it is not the leader.</summary>
    public static bool IsNotLeader(RpcException error) =>
        error.StatusCode == StatusCode.Unavailable && HasReason(error, ErrorReasons.NotLeader);

    /// <summary>The leader named by a not-leader refusal; null when the refusal is of another kind or the leader is unknown.</summary>
    public static string? LeaderOf(RpcException error)
    {
        if (!IsNotLeader(error))
        {
            return null;
        }
        var leader = TrailerOf(error, LeaderTrailer);
        return string.IsNullOrEmpty(leader) ? null : leader;
    }
}
