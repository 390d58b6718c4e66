using FeitianK8s.Proto.Csi;
using ControllerRpc = FeitianK8s.Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// Which controller sidecars the CSI controller pod runs, derived from what the driver advertises
/// (<see cref="FeitianCsiCapabilities"/>), as each sidecar checks at its start (versions checked:
/// external-provisioner v5.1.0, external-attacher v4.7.0, external-resizer v1.12.0,
/// external-snapshotter v8.1.0):
/// csi-snapshotter exits unless CREATE_DELETE_SNAPSHOT; csi-resizer exits unless EXPAND_VOLUME (or
/// node expansion); csi-attacher without PUBLISH_UNPUBLISH_VOLUME only marks attachments attached,
/// so it runs exactly when the CSIDriver says attachRequired; csi-provisioner needs CREATE_DELETE_VOLUME.
/// </summary>
public static class CsiSidecars
{
    public const string Provisioner = "csi-provisioner";
    public const string Attacher = "csi-attacher";
    public const string Resizer = "csi-resizer";
    public const string Snapshotter = "csi-snapshotter";

    /// <summary>The controller capability each sidecar requires of the driver.</summary>
    public static readonly IReadOnlyDictionary<string, ControllerRpc> Requires = new Dictionary<string, ControllerRpc>
    {
        [Provisioner] = ControllerRpc.CreateDeleteVolume,
        [Attacher] = ControllerRpc.PublishUnpublishVolume,
        [Resizer] = ControllerRpc.ExpandVolume,
        [Snapshotter] = ControllerRpc.CreateDeleteSnapshot,
    };

    public static bool Deployed(string sidecar) => FeitianCsiCapabilities.Has(Requires[sidecar]);

    /// <summary>The driver publishes volumes to nodes (ControllerPublishVolume): CSIDriver.attachRequired.</summary>
    public static bool AttachRequired => Deployed(Attacher);

    /// <summary>A VolumeSnapshotClass only makes sense while a snapshotter serves it.</summary>
    public static bool Snapshots => Deployed(Snapshotter);
}
