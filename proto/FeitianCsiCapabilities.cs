using ControllerRpc = FeitianK8s.Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type;
using NodeRpc = FeitianK8s.Proto.Csi.NodeServiceCapability.Types.RPC.Types.Type;
using PluginService = FeitianK8s.Proto.Csi.PluginCapability.Types.Service.Types.Type;
using VolumeExpansionType = FeitianK8s.Proto.Csi.PluginCapability.Types.VolumeExpansion.Types.Type;

namespace FeitianK8s.Proto.Csi;

/// <summary>
/// The one list of what the Feitian CSI driver advertises. The driver's Identity, Controller and
/// Node services answer from it, and the operator deploys exactly the sidecars it calls for (and a
/// VolumeSnapshotClass only with CREATE_DELETE_SNAPSHOT): add a capability here when its RPCs are
/// implemented and its sidecar comes back with it.
/// </summary>
public static class FeitianCsiCapabilities
{
    /// <summary>ControllerGetCapabilities: volumes, snapshots (RAF snapshots) and clones (content sources snapshot and volume).</summary>
    public static readonly IReadOnlyList<ControllerRpc> Controller =
    [
        ControllerRpc.CreateDeleteVolume, ControllerRpc.PublishUnpublishVolume, ControllerRpc.ListVolumes, ControllerRpc.GetCapacity,
        ControllerRpc.CreateDeleteSnapshot, ControllerRpc.ListSnapshots, ControllerRpc.CloneVolume,
        ControllerRpc.PublishReadonly, ControllerRpc.ExpandVolume, ControllerRpc.ListVolumesPublishedNodes, ControllerRpc.GetVolume,
    ];

    /// <summary>NodeGetCapabilities.</summary>
    public static readonly IReadOnlyList<NodeRpc> Node =
        [NodeRpc.StageUnstageVolume, NodeRpc.GetVolumeStats, NodeRpc.ExpandVolume, NodeRpc.VolumeCondition];

    /// <summary>
    /// Plugin services besides CONTROLLER_SERVICE (which only a driver running the controller
    /// advertises). No VOLUME_ACCESSIBILITY_CONSTRAINTS: every node reaches the cluster over the
    /// network, racks are the master's placement concern, so volumes carry no accessible topology.
    /// </summary>
    public static readonly IReadOnlyList<PluginService> PluginServices = [];

    /// <summary>GetPluginCapabilities' VolumeExpansion: volumes grow while published.</summary>
    public const VolumeExpansionType VolumeExpansion = VolumeExpansionType.Online;

    public static bool Has(ControllerRpc rpc) => Controller.Contains(rpc);

    public static bool Has(PluginService service) => PluginServices.Contains(service);
}
