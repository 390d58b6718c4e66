using System.Globalization;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Security;

namespace FeitianK8s.Csi.Node;

/// <summary>The two data-path helpers of a staged volume.</summary>
public enum HelperKind
{
    /// <summary>The RAF engine exported over NBD on a unix socket (<c>FeitianK8s.Csi --serve-volume</c>).</summary>
    VolumeHost,
    /// <summary>nbdfuse: the volume host's export as a file (FUSE_DIR/nbd) for a loop device, when there is no kernel nbd.</summary>
    NbdFuse,
}

public static class HelperKinds
{
    public const string VolumeHostName = "volume-host";
    public const string NbdFuseName = "nbdfuse";

    public static string Name(this HelperKind kind) => kind == HelperKind.VolumeHost ? VolumeHostName : NbdFuseName;

    public static HelperKind? Parse(string name) => name switch
    {
        VolumeHostName => HelperKind.VolumeHost,
        NbdFuseName => HelperKind.NbdFuse,
        _ => null,
    };
}

/// <summary>One helper to run for a volume. The marker (a path unique to the volume) is what its command line must contain for a pid to be taken for it.</summary>
public sealed record HelperSpec(string VolumeId, HelperKind Kind, string SocketPath, string FuseDir, bool ReadOnly, string LogFile)
{
    public string Marker => Kind == HelperKind.VolumeHost ? SocketPath : FuseDir;

    /// <summary>Null when the spec is usable, else the reason (paths must be absolute and normalized: they name files on the node).</summary>
    public string? Problem()
    {
        if (string.IsNullOrWhiteSpace(VolumeId) || VolumeId.Length > 128)
        {
            return "volume_id must be 1 to 128 characters";
        }
        foreach (var (name, path) in new[] { ("socket_path", SocketPath), ("log_file", LogFile) }.Concat(Kind == HelperKind.NbdFuse ? [("fuse_dir", FuseDir)] : []))
        {
            if (string.IsNullOrEmpty(path) || !Path.IsPathFullyQualified(path) || Path.GetFullPath(path) != path || path.Contains('\0', StringComparison.Ordinal))
            {
                return $"{name} must be an absolute normalized path (got '{path}')";
            }
        }
        return null;
    }
}

/// <summary>How a volume host reaches the masters and as whom: the same for every volume of the node.</summary>
public sealed record VolumeHostConfig(IReadOnlyList<string> Masters, string NodeId, TimeSpan MasterWait, TlsFiles? Tls);

/// <summary>The command line of a helper.</summary>
public static class HelperCommand
{
    public static (string FileName, IReadOnlyList<string> Args) For(HelperSpec spec, VolumeHostConfig config)
    {
        if (spec.Kind == HelperKind.NbdFuse)
        {
            return ("nbdfuse", [spec.FuseDir, "--unix", spec.SocketPath]);
        }
        var exe = ServerExecutable.Find("FeitianK8s.Csi");
        List<string> args = [.. exe.PrefixArguments, "--serve-volume", spec.VolumeId, "--socket", spec.SocketPath,
            "--masters", string.Join(',', config.Masters), "--node-id", config.NodeId,
            "--master-wait", config.MasterWait.TotalSeconds.ToString(CultureInfo.InvariantCulture)];
        if (spec.ReadOnly)
        {
            args.Add("--read-only");
        }
        if (config.Tls is { } tls)
        {
            args.AddRange(tls.ToArgs());
        }
        return (exe.FileName, args);
    }
}
