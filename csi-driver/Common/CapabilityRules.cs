using FeitianK8s.Proto.Csi;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Common;

/// <summary>Which volume capabilities a RAF volume supports: one writer node at a time, or readers only.</summary>
public static class CapabilityRules
{
    public static readonly IReadOnlySet<string> FileSystems = new HashSet<string>(StringComparer.Ordinal) { "ext4", "xfs" };

    public static bool IsSupportedMode(Mode mode) =>
        mode is Mode.SingleNodeWriter or Mode.SingleNodeSingleWriter or Mode.SingleNodeReaderOnly or Mode.MultiNodeReaderOnly;

    public static bool IsReadOnlyMode(Mode mode) => mode is Mode.SingleNodeReaderOnly or Mode.MultiNodeReaderOnly;

    /// <summary>Null when supported, else why not.</summary>
    public static string? Check(VolumeCapability capability)
    {
        if (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.None)
        {
            return "volume capability has neither block nor mount access type";
        }
        if (capability.AccessMode is null || capability.AccessMode.Mode == Mode.Unknown)
        {
            return "volume capability has no access mode";
        }
        if (!IsSupportedMode(capability.AccessMode.Mode))
        {
            return $"access mode {capability.AccessMode.Mode} is not supported (a RAF volume has one writer node at a time)";
        }
        if (capability.Mount is { } mount && mount.FsType.Length > 0 && !FileSystems.Contains(mount.FsType))
        {
            return $"fs type '{mount.FsType}' is not supported (ext4, xfs)";
        }
        return null;
    }

    /// <summary>Throws INVALID_ARGUMENT when the list is empty or one capability is malformed.</summary>
    public static void RequireValid(IReadOnlyCollection<VolumeCapability> capabilities, string volume)
    {
        CsiErrors.Require(capabilities.Count > 0, $"volume capabilities are missing for volume '{volume}'");
        foreach (var c in capabilities)
        {
            CsiErrors.Require(c.AccessTypeCase != VolumeCapability.AccessTypeOneofCase.None,
                $"a volume capability of volume '{volume}' has neither block nor mount access type");
            CsiErrors.Require(c.AccessMode is not null && c.AccessMode.Mode != Mode.Unknown,
                $"a volume capability of volume '{volume}' has no access mode");
        }
    }
}
