using System.Globalization;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using Grpc.Core;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>Maps a refused chunk operation to its gRPC status and "feitian-reason" trailer.</summary>
public static class ChunkErrorMapping
{
    /// <summary>Reason for an I/O error of the server's own disk that is not a full disk.</summary>
    public const string IoErrorReason = "io-error";

    public static (StatusCode Code, string Reason) Of(ChunkError error) => error switch
    {
        ChunkError.NotFound => (StatusCode.NotFound, ErrorReasons.NotFound),
        ChunkError.StaleEpoch => (StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch),
        ChunkError.WrongOffset => (StatusCode.OutOfRange, ErrorReasons.WrongOffset),
        ChunkError.ChecksumMismatch => (StatusCode.DataLoss, ErrorReasons.ChecksumMismatch),
        ChunkError.Sealed => (StatusCode.FailedPrecondition, ErrorReasons.Sealed),
        ChunkError.TooLarge => (StatusCode.InvalidArgument, ErrorReasons.TooLarge),
        ChunkError.DiskFull => (StatusCode.ResourceExhausted, ErrorReasons.DiskFull),
        ChunkError.ChunkFull => (StatusCode.OutOfRange, ErrorReasons.ChunkFull),
        ChunkError.Corrupt => (StatusCode.DataLoss, ErrorReasons.Corrupt),
        ChunkError.InvalidArgument => (StatusCode.InvalidArgument, ErrorReasons.InvalidArgument),
        ChunkError.BeyondEnd => (StatusCode.OutOfRange, ErrorReasons.InvalidArgument),
        ChunkError.AlreadyExists => (StatusCode.AlreadyExists, ErrorReasons.AlreadyExists),
        ChunkError.SourceMismatch => (StatusCode.FailedPrecondition, ErrorReasons.InvalidArgument),
        ChunkError.IoError => (StatusCode.Internal, IoErrorReason),
        _ => (StatusCode.Internal, IoErrorReason),
    };

    public static RpcException ToRpcException(ChunkStoreException error)
    {
        var (code, reason) = Of(error.Error);
        return error.ChunkLength is { } length
            ? FeitianStatus.Error(code, reason, error.Message, (FeitianStatus.ChunkLengthTrailer, length.ToString(CultureInfo.InvariantCulture)))
            : FeitianStatus.Error(code, reason, error.Message);
    }
}
