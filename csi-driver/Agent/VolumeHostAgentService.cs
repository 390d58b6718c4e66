using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.VolumeHost;
using Grpc.Core;
using AgentBase = FeitianK8s.Proto.VolumeHost.VolumeHostAgent.VolumeHostAgentBase;

namespace FeitianK8s.Csi.Agent;

/// <summary>The agent's gRPC surface: parse, call <see cref="HelperSupervisor"/>, map the outcome to a status.</summary>
public sealed class VolumeHostAgentService(HelperSupervisor supervisor) : AgentBase
{
    public override async Task<HelperStatus> StartHelper(StartHelperRequest request, ServerCallContext context)
    {
        var spec = new HelperSpec(request.VolumeId, ParseKind(request.Kind), request.SocketPath, request.FuseDir, request.ReadOnly, request.LogFile);
        try
        {
            return ToStatus(await supervisor.StartAsync(spec, context.CancellationToken));
        }
        catch (ArgumentException e)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }
        catch (HelperConflictException e)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message));
        }
    }

    public override async Task<HelperStatus> GetHelper(HelperRef request, ServerCallContext context) =>
        await supervisor.GetAsync(request.VolumeId, ParseKind(request.Kind), context.CancellationToken) is { } report
            ? ToStatus(report)
            : throw new RpcException(new Status(StatusCode.NotFound, $"no {request.Kind} of volume '{request.VolumeId}' is known to this agent"));

    public override async Task<HelperStatus> StopHelper(StopHelperRequest request, ServerCallContext context)
    {
        var kind = ParseKind(request.Kind);
        if (request.GraceSeconds is < 0 or > 600 || double.IsNaN(request.GraceSeconds))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"grace_seconds must be 0 to 600 (got {request.GraceSeconds})"));
        }
        var grace = request.GraceSeconds == 0 ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(request.GraceSeconds);
        var report = await supervisor.StopAsync(request.VolumeId, kind, grace, context.CancellationToken);
        var status = report is null ? new HelperStatus { VolumeId = request.VolumeId, Kind = request.Kind } : ToStatus(report);
        status.State = "stopped";
        return status;
    }

    public override async Task<ListHelpersResponse> ListHelpers(ListHelpersRequest request, ServerCallContext context)
    {
        var response = new ListHelpersResponse();
        response.Helpers.AddRange((await supervisor.ListAsync(context.CancellationToken)).Select(ToStatus));
        return response;
    }

    private static HelperKind ParseKind(string kind) =>
        HelperKinds.Parse(kind) ?? throw new RpcException(new Status(StatusCode.InvalidArgument,
            $"kind must be '{HelperKinds.VolumeHostName}' or '{HelperKinds.NbdFuseName}' (got '{kind}')"));

    public static HelperStatus ToStatus(HelperReport report) => new()
    {
        VolumeId = report.Spec.VolumeId,
        Kind = report.Spec.Kind.Name(),
        Pid = report.Pid,
        State = report.State switch
        {
            HelperRunState.Running => "running",
            HelperRunState.Exited => "exited",
            _ => "gone",
        },
        ExitCode = report.ExitCode ?? 0,
        Fenced = report.Fenced,
        SocketPath = report.Spec.SocketPath,
        FuseDir = report.Spec.FuseDir,
        ReadOnly = report.Spec.ReadOnly,
    };
}
