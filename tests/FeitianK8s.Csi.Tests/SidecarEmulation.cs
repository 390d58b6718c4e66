using FeitianK8s.Proto.Csi;
using k8s.Models;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;
using ControllerRpc = FeitianK8s.Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type;
using PluginService = FeitianK8s.Proto.Csi.PluginCapability.Types.Service.Types.Type;

namespace FeitianK8s.Csi.Tests;

/// <summary>What a PersistentVolumeClaim asks for, as far as external-provisioner reads it.</summary>
public sealed record ClaimEmulation(string Uid, string Name, string Namespace, IReadOnlyList<string> AccessModes, long RequestBytes, bool Block = false);

/// <summary>What a driver answered to GetPluginCapabilities and ControllerGetCapabilities.</summary>
public sealed record DriverCapabilities(IReadOnlySet<PluginService> PluginServices, PluginCapability.Types.VolumeExpansion.Types.Type? VolumeExpansion,
    IReadOnlySet<ControllerRpc> ControllerRpcs)
{
    /// <summary>Asks a real driver over its socket, as every sidecar does at start.</summary>
    public static async Task<DriverCapabilities> QueryAsync(CsiClient client)
    {
        var plugin = await client.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
        var services = plugin.Capabilities.Where(c => c.Service is not null).Select(c => c.Service.Type).ToHashSet();
        var expansion = plugin.Capabilities.FirstOrDefault(c => c.VolumeExpansion is not null)?.VolumeExpansion.Type;
        var rpcs = new HashSet<ControllerRpc>();
        if (services.Contains(PluginService.ControllerService))
        {
            var controller = await client.Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest());
            rpcs.UnionWith(controller.Capabilities.Select(c => c.Rpc.Type));
        }
        return new DriverCapabilities(services, expansion, rpcs);
    }
}

/// <summary>
/// EMULATION of external-provisioner v5.1.0 (the sidecar cannot run here: it needs a real API
/// server) from the PVC and StorageClass to the CreateVolumeRequest, after its
/// pkg/controller/controller.go: parameters pass through except the <c>csi.storage.k8s.io/</c>
/// keys it knows (fstype and the secret references), which it removes, and it refuses any other
/// key of that prefix (removePrefixedParameters); <c>--extra-create-metadata</c> then ADDS
/// pvc/name, pvc/namespace and pv/name; the name is <c>pvc-&lt;claim uid&gt;</c>
/// (--volume-name-prefix=pvc, whole uid); the capacity range is the claim's request; the volume
/// capabilities come from the claim's access modes and volume mode, with the class's fstype and
/// mount options; accessibility requirements only when the driver advertises
/// VOLUME_ACCESSIBILITY_CONSTRAINTS (supportsTopology), else none at all.
/// </summary>
public static class ExternalProvisionerEmulation
{
    public const string Prefix = "csi.storage.k8s.io/";
    public const string FsTypeKey = Prefix + "fstype";

    /// <summary>The prefixed keys removePrefixedParameters knows (v5.1.0); any other prefixed key is an error.</summary>
    public static readonly IReadOnlySet<string> KnownPrefixedKeys = new HashSet<string>(StringComparer.Ordinal)
    {
        FsTypeKey,
        Prefix + "provisioner-secret-name", Prefix + "provisioner-secret-namespace",
        Prefix + "controller-publish-secret-name", Prefix + "controller-publish-secret-namespace",
        Prefix + "node-stage-secret-name", Prefix + "node-stage-secret-namespace",
        Prefix + "node-publish-secret-name", Prefix + "node-publish-secret-namespace",
        Prefix + "controller-expand-secret-name", Prefix + "controller-expand-secret-namespace",
        Prefix + "secret-name", Prefix + "secret-namespace",
        Prefix + "node-expand-secret-name", Prefix + "node-expand-secret-namespace",
    };

    /// <summary>removePrefixedParameters: the parameters CreateVolume receives.</summary>
    public static Dictionary<string, string> StripParameters(IDictionary<string, string>? parameters)
    {
        var kept = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in parameters ?? new Dictionary<string, string>())
        {
            if (key.StartsWith(Prefix, StringComparison.Ordinal))
            {
                if (!KnownPrefixedKeys.Contains(key))
                {
                    throw new InvalidOperationException($"found unknown parameter key \"{key}\" with reserved namespace {Prefix}");
                }
                continue;
            }
            kept[key] = value;
        }
        return kept;
    }

    /// <summary>The provisioner's args in the generated controller Deployment.</summary>
    public static IList<string> ProvisionerArgs(V1Deployment deployment) =>
        deployment.Spec.Template.Spec.Containers.Single(c => c.Name == "csi-provisioner").Args;

    /// <summary>
    /// The request as the provisioner builds it. <paramref name="topologySegments"/> are the
    /// CSINode topology segments of the nodes (what NodeGetInfo reported), the first one the
    /// selected node's; they are only used when the driver supports topology.
    /// </summary>
    public static CreateVolumeRequest BuildRequest(V1StorageClass storageClass, V1Deployment deployment, ClaimEmulation claim,
        DriverCapabilities driver, IReadOnlyList<IReadOnlyDictionary<string, string>> topologySegments)
    {
        var args = ProvisionerArgs(deployment);
        var name = $"pvc-{claim.Uid}";
        var request = new CreateVolumeRequest { Name = name, CapacityRange = new CapacityRange { RequiredBytes = claim.RequestBytes } };
        request.Parameters.Add(StripParameters(storageClass.Parameters));
        if (args.Contains("--extra-create-metadata"))
        {
            request.Parameters[Prefix + "pvc/name"] = claim.Name;
            request.Parameters[Prefix + "pvc/namespace"] = claim.Namespace;
            request.Parameters[Prefix + "pv/name"] = name;
        }
        var fsType = storageClass.Parameters?.TryGetValue(FsTypeKey, out var f) == true ? f : "";
        var singleNodeMultiWriter = driver.ControllerRpcs.Contains(ControllerRpc.SingleNodeMultiWriter);
        foreach (var accessMode in claim.AccessModes)
        {
            var capability = new VolumeCapability { AccessMode = new VolumeCapability.Types.AccessMode { Mode = ToCsiMode(accessMode, singleNodeMultiWriter) } };
            if (claim.Block)
            {
                capability.Block = new VolumeCapability.Types.BlockVolume();
            }
            else
            {
                capability.Mount = new VolumeCapability.Types.MountVolume { FsType = fsType };
                capability.Mount.MountFlags.AddRange(storageClass.MountOptions ?? []);
            }
            request.VolumeCapabilities.Add(capability);
        }
        if (driver.PluginServices.Contains(PluginService.VolumeAccessibilityConstraints))
        {
            // Only with the capability: requisite = every node's segment, preferred = the selected node's first.
            var requirement = new TopologyRequirement();
            foreach (var segment in topologySegments.DistinctBy(s => string.Join(",", s.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"))))
            {
                var topology = new Topology();
                topology.Segments.Add(segment.ToDictionary());
                requirement.Requisite.Add(topology);
                requirement.Preferred.Add(topology.Clone());
            }
            request.AccessibilityRequirements = requirement;
        }
        return request;
    }

    /// <summary>pkg/accessmodes ToCSIAccessMode (one access mode per capability, as the provisioner sends them).</summary>
    public static Mode ToCsiMode(string accessMode, bool singleNodeMultiWriter) => accessMode switch
    {
        "ReadWriteOnce" => singleNodeMultiWriter ? Mode.SingleNodeMultiWriter : Mode.SingleNodeWriter,
        "ReadWriteOncePod" => singleNodeMultiWriter ? Mode.SingleNodeSingleWriter : Mode.SingleNodeWriter,
        "ReadOnlyMany" => Mode.MultiNodeReaderOnly,
        "ReadWriteMany" => Mode.MultiNodeMultiWriter,
        _ => throw new InvalidOperationException($"unknown access mode {accessMode}"),
    };

    /// <summary>The PV the provisioner writes: node affinity only from accessible topology.</summary>
    public static V1PersistentVolume ToPersistentVolume(CreateVolumeRequest request, CreateVolumeResponse response, ClaimEmulation claim, string fsType)
    {
        var pv = new V1PersistentVolume
        {
            Metadata = new V1ObjectMeta { Name = request.Name },
            Spec = new V1PersistentVolumeSpec
            {
                AccessModes = claim.AccessModes.ToList(),
                Capacity = new Dictionary<string, ResourceQuantity> { ["storage"] = new(response.Volume.CapacityBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)) },
                Csi = new V1CSIPersistentVolumeSource
                {
                    Driver = CsiDriverOptions.DriverName,
                    VolumeHandle = response.Volume.VolumeId,
                    VolumeAttributes = response.Volume.VolumeContext.ToDictionary(),
                    FsType = claim.Block ? null : fsType,
                },
                VolumeMode = claim.Block ? "Block" : "Filesystem",
            },
        };
        if (response.Volume.AccessibleTopology.Count > 0)
        {
            pv.Spec.NodeAffinity = new V1VolumeNodeAffinity
            {
                Required = new V1NodeSelector
                {
                    NodeSelectorTerms = response.Volume.AccessibleTopology.Select(t => new V1NodeSelectorTerm
                    {
                        MatchExpressions = t.Segments.Select(kv => new V1NodeSelectorRequirement { Key = kv.Key, OperatorProperty = "In", Values = [kv.Value] }).ToList(),
                    }).ToList(),
                },
            };
        }
        return pv;
    }
}

/// <summary>
/// EMULATION of external-attacher v4.7.0's csiHandler: ControllerPublishVolume for a
/// VolumeAttachment, with the node id the kubelet's node-driver-registrar put into CSINode (the
/// node plugin's NodeGetInfo node_id), the volume capability built from the PV
/// (pkg/controller/util.go GetVolumeCapabilities: mount with the PV's fsType and mount options,
/// or block; access mode from the PV's access modes), readonly from the PV's csi.readOnly; the
/// answer's publish_context is stored in the VolumeAttachment and handed by the kubelet to NodeStageVolume.
/// </summary>
public static class ExternalAttacherEmulation
{
    public static ControllerPublishVolumeRequest BuildRequest(V1PersistentVolume pv, string csiNodeId, bool singleNodeMultiWriter)
    {
        var capability = new VolumeCapability { AccessMode = new VolumeCapability.Types.AccessMode() };
        if (pv.Spec.VolumeMode == "Block")
        {
            capability.Block = new VolumeCapability.Types.BlockVolume();
        }
        else
        {
            capability.Mount = new VolumeCapability.Types.MountVolume { FsType = pv.Spec.Csi.FsType ?? "" };
            capability.Mount.MountFlags.AddRange(pv.Spec.MountOptions ?? []);
        }
        var modes = pv.Spec.AccessModes;
        // GetVolumeCapabilities: one access mode; ReadWriteOnce wins over ReadOnlyMany when both are listed.
        capability.AccessMode.Mode = modes.Contains("ReadWriteMany") ? Mode.MultiNodeMultiWriter
            : modes.Contains("ReadWriteOncePod") ? (singleNodeMultiWriter ? Mode.SingleNodeSingleWriter : Mode.SingleNodeWriter)
            : modes.Contains("ReadWriteOnce") ? (singleNodeMultiWriter ? Mode.SingleNodeMultiWriter : Mode.SingleNodeWriter)
            : Mode.MultiNodeReaderOnly;
        var request = new ControllerPublishVolumeRequest
        {
            VolumeId = pv.Spec.Csi.VolumeHandle,
            NodeId = csiNodeId,
            VolumeCapability = capability,
            Readonly = pv.Spec.Csi.ReadOnlyProperty == true,
        };
        request.VolumeContext.Add(pv.Spec.Csi.VolumeAttributes ?? new Dictionary<string, string>());
        return request;
    }
}

/// <summary>
/// EMULATION of the start-up checks of the controller sidecars (each asks the driver over the
/// socket before it does anything), after their cmd/*/main.go at the checked tags:
/// csi-provisioner (v5.1.0) exits without CONTROLLER_SERVICE or CREATE_DELETE_VOLUME;
/// csi-snapshotter (v8.1.0) exits without CREATE_DELETE_SNAPSHOT;
/// csi-resizer (v1.12.0) uses the driver with CONTROLLER_SERVICE and EXPAND_VOLUME, falls back to a
/// trivial resizer when only the node expands (plugin VolumeExpansion), else exits;
/// csi-attacher (v4.7.0) uses the driver with PUBLISH_UNPUBLISH_VOLUME, else only marks
/// VolumeAttachments attached (so it is only of use, and only deployed, with that capability).
/// </summary>
public static class SidecarStartupEmulation
{
    /// <summary>Null when the sidecar starts and does its job against this driver, else why not.</summary>
    public static string? Check(string sidecar, DriverCapabilities driver)
    {
        var controller = driver.PluginServices.Contains(PluginService.ControllerService);
        return sidecar switch
        {
            "csi-provisioner" => !controller ? "CSI driver does not support dynamic provisioning: plugin CONTROLLER_SERVICE capability is not reported"
                : !driver.ControllerRpcs.Contains(ControllerRpc.CreateDeleteVolume) ? "CSI driver does not support dynamic provisioning: controller CREATE_DELETE_VOLUME capability is not reported"
                : null,
            "csi-snapshotter" => driver.ControllerRpcs.Contains(ControllerRpc.CreateDeleteSnapshot) ? null : "CSI driver does not support ControllerCreateSnapshot",
            "csi-resizer" => controller && driver.ControllerRpcs.Contains(ControllerRpc.ExpandVolume) ? null
                : driver.VolumeExpansion is not null ? null
                : "CSI driver neither supports controller resize nor node resize",
            "csi-attacher" => controller && driver.ControllerRpcs.Contains(ControllerRpc.PublishUnpublishVolume) ? null
                : "CSI driver does not support ControllerPublishUnpublish: the attacher would only mark attachments attached",
            "liveness-probe" or "csi-driver" => null,
            _ => $"unknown container {sidecar}",
        };
    }
}
