using FeitianK8s.Proto.Csi;
using Grpc.Core;

namespace FeitianK8s.Csi.Identity;

/// <summary>
/// CSI Identity: plugin name and version, the capabilities of <see cref="FeitianCsiCapabilities"/>,
/// and readiness of the plugin itself (<see cref="PluginHealth"/>).
/// </summary>
public sealed class IdentityService(PluginHealth health, CsiDriverOptions options) : Proto.Csi.Identity.IdentityBase
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
        response.Capabilities.AddRange(FeitianCsiCapabilities.PluginServices.Select(Service));
        response.Capabilities.Add(new PluginCapability
        {
            VolumeExpansion = new PluginCapability.Types.VolumeExpansion { Type = FeitianCsiCapabilities.VolumeExpansion },
        });
        return Task.FromResult(response);
    }

    /// <summary>Ready while the plugin itself works; independent of the master (see <see cref="PluginHealth"/>).</summary>
    public override Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context) =>
        Task.FromResult(new ProbeResponse { Ready = health.Problem() is null });

    private static PluginCapability Service(PluginCapability.Types.Service.Types.Type type) =>
        new() { Service = new PluginCapability.Types.Service { Type = type } };
}
