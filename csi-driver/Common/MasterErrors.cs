using Grpc.Core;

namespace FeitianK8s.Csi.Common;

/// <summary>Maps a master error onto the CSI error the spec names for it, keeping the master's message.</summary>
public static class MasterErrors
{
    public static RpcException ToCsi(RpcException e, string what) => e.StatusCode switch
    {
        StatusCode.NotFound => CsiErrors.NotFound($"{what}: {e.Status.Detail}"),
        StatusCode.InvalidArgument => CsiErrors.InvalidArgument($"{what}: {e.Status.Detail}"),
        StatusCode.AlreadyExists => CsiErrors.AlreadyExists($"{what}: {e.Status.Detail}"),
        StatusCode.ResourceExhausted => CsiErrors.ResourceExhausted($"{what}: {e.Status.Detail}"),
        StatusCode.FailedPrecondition => CsiErrors.FailedPrecondition($"{what}: {e.Status.Detail}"),
        StatusCode.Unavailable or StatusCode.DeadlineExceeded => CsiErrors.Unavailable($"{what}: master unavailable: {e.Status.Detail}"),
        _ => CsiErrors.Internal($"{what}: master answered {e.StatusCode}: {e.Status.Detail}"),
    };
}
