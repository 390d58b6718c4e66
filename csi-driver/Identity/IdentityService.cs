using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Csi.Identity;

/// <summary>CSI Identity: plugin name and version, capabilities, and readiness (a master answers).</summary>
public sealed class IdentityService(MasterConnection master, CsiDriverOptions options) : Proto.Csi.Identity.IdentityBase
{
    public static readonly string Version = typeof(IdentityService).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, ServerCallContext context) =>
        Task.FromResult(new GetPluginInfoResponse { Name = CsiDriverOptions.DriverName, VendorVersion = Version });

    public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new GetPluginCapabilitiesResponse();
        if (options.RunsController)
        {
            response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.ControllerService));
        }
        response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints));
        response.Capabilities.Add(new PluginCapability
        {
            VolumeExpansion = new PluginCapability.Types.VolumeExpansion { Type = PluginCapability.Types.VolumeExpansion.Types.Type.Online },
        });
        return Task.FromResult(response);
    }

    /// <summary>Ready only while a master answers (within 3 seconds).</summary>
    public override async Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        limit.CancelAfter(TimeSpan.FromSeconds(3));
        bool ready;
        try
        {
            await master.CallAsync("probe", (c, o) => c.GetClusterStatusAsync(new GetClusterStatusRequest(), o.WithDeadline(DateTime.UtcNow.AddSeconds(3))).ResponseAsync, limit.Token);
            ready = true;
        }
        catch (Exception e) when (e is RpcException or OperationCanceledException)
        {
            ready = false;
        }
        return new ProbeResponse { Ready = ready };
    }

    private static PluginCapability Service(PluginCapability.Types.Service.Types.Type type) =>
        new() { Service = new PluginCapability.Types.Service { Type = type } };
}
