using Grpc.Core;

namespace FeitianK8s.Csi.Common;

/// <summary>The gRPC errors the CSI spec names, each with a message that carries the ids involved.</summary>
public static class CsiErrors
{
    public static RpcException InvalidArgument(string message) => new(new Status(StatusCode.InvalidArgument, message));
    public static RpcException NotFound(string message) => new(new Status(StatusCode.NotFound, message));
    public static RpcException AlreadyExists(string message) => new(new Status(StatusCode.AlreadyExists, message));
    public static RpcException OutOfRange(string message) => new(new Status(StatusCode.OutOfRange, message));
    public static RpcException FailedPrecondition(string message) => new(new Status(StatusCode.FailedPrecondition, message));
    public static RpcException Aborted(string message) => new(new Status(StatusCode.Aborted, message));
    public static RpcException Unavailable(string message) => new(new Status(StatusCode.Unavailable, message));
    public static RpcException ResourceExhausted(string message) => new(new Status(StatusCode.ResourceExhausted, message));
    public static RpcException Internal(string message) => new(new Status(StatusCode.Internal, message));

    public static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw InvalidArgument(message);
        }
    }
}
