using FeitianK8s.Core.Common;
using Grpc.Core;

namespace FeitianK8s.Core.Pangu;

/// <summary>Classifies gRPC failures by status code and "feitian-reason" trailer, never by message.</summary>
public static class RpcErrors
{
    public static bool IsStaleEpoch(RpcException e) =>
        e.StatusCode == StatusCode.FailedPrecondition && FeitianStatus.HasReason(e, ErrorReasons.StaleEpoch);

    public static bool IsChunkFull(RpcException e) =>
        e.StatusCode == StatusCode.OutOfRange && FeitianStatus.HasReason(e, ErrorReasons.ChunkFull);

    /// <summary>The replica holds corrupt data or lost the chunk: report it bad and read elsewhere.</summary>
    public static bool IsReplicaDamage(RpcException e) =>
        e.StatusCode is StatusCode.DataLoss or StatusCode.NotFound;

    /// <summary>The server could not be reached or did not answer in time.</summary>
    public static bool IsUnavailable(RpcException e) =>
        e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Aborted;

    public static PanguErrorKind KindOf(RpcException e) => e.StatusCode switch
    {
        StatusCode.NotFound => PanguErrorKind.NotFound,
        StatusCode.AlreadyExists => PanguErrorKind.AlreadyExists,
        StatusCode.InvalidArgument or StatusCode.OutOfRange or StatusCode.FailedPrecondition => PanguErrorKind.InvalidArgument,
        StatusCode.ResourceExhausted => PanguErrorKind.NoSpace,
        StatusCode.DataLoss => PanguErrorKind.Corrupt,
        StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Aborted => PanguErrorKind.Unavailable,
        _ => PanguErrorKind.Internal,
    };

    /// <summary>
    /// Maps a failed call about <paramref name="path"/> to the file-system error: a stale
    /// epoch becomes <see cref="FencedException"/>, everything else a <see cref="PanguException"/>.
    /// </summary>
    public static Exception Map(RpcException e, string what, string path, ulong epoch = 0)
    {
        if (IsStaleEpoch(e))
        {
            return new FencedException(path, epoch, e);
        }
        var reason = FeitianStatus.ReasonOf(e);
        var detail = reason is null ? e.Status.Detail : $"{e.Status.Detail} ({reason})";
        return new PanguException(KindOf(e), $"{what} {path}: {e.StatusCode}: {detail}", e);
    }
}
