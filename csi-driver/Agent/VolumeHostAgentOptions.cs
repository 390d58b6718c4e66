using FeitianK8s.Csi.Common;
using FeitianK8s.Core.Security;
using FeitianK8s.Csi.Node;

namespace FeitianK8s.Csi.Agent;

/// <summary>
/// Command line of the volume-host agent: <c>--mode volume-host --agent-socket PATH --node-id NODE
/// --masters HOST:PORT[,…] [--state-dir DIR] [--master-wait SECONDS] [--tls-ca F --tls-cert F --tls-key F]</c>.
/// The node id, masters, wait and certificate are handed to every volume host it starts (they must
/// be the node plugin's: a volume host holds the write lease as NODE).
/// </summary>
public sealed class VolumeHostAgentOptions
{
    public const string ModeName = "volume-host";

    /// <summary>The agent's unix socket; its directory is made 0700 (root only: the socket is the agent's only protection).</summary>
    public required string SocketPath { get; init; }
    /// <summary>Where the agent keeps one JSON record per helper (default: the socket's directory).</summary>
    public required string StateDir { get; init; }
    public required VolumeHostConfig VolumeHosts { get; init; }

    /// <summary>True when the command line asks for the agent (<c>--mode volume-host</c>).</summary>
    public static bool IsAgentMode(IReadOnlyList<string> args)
    {
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] == "--mode=" + ModeName || (args[i] == "--mode" && i + 1 < args.Count && args[i + 1] == ModeName))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Throws <see cref="ArgumentException"/> with the reason.</summary>
    public static VolumeHostAgentOptions Parse(IReadOnlyList<string> args)
    {
        string[] known = ["--mode", "--agent-socket", "--node-id", "--masters", "--state-dir", "--master-wait", "--tls-ca", "--tls-cert", "--tls-key"];
        var values = OptionArgs.Parse(args, known, "known in volume-host mode");
        if (values.GetValueOrDefault("--mode") != ModeName)
        {
            throw new ArgumentException($"--mode must be {ModeName}");
        }
        var socket = values.GetValueOrDefault("--agent-socket") ?? throw new ArgumentException("--agent-socket PATH is required");
        if (!Path.IsPathFullyQualified(socket))
        {
            throw new ArgumentException($"--agent-socket must be an absolute path (got '{socket}')");
        }
        var nodeId = values.GetValueOrDefault("--node-id") ?? "";
        if (nodeId.Length == 0)
        {
            throw new ArgumentException("--node-id is required (the node plugin's: volume hosts hold write leases as this node)");
        }
        var masters = CsiDriverOptions.ParseMasters(values.GetValueOrDefault("--masters") ?? throw new ArgumentException("--masters HOST:PORT[,...] is required"));
        var wait = values.TryGetValue("--master-wait", out var w) ? CsiDriverOptions.ParseMasterWait(w) : TimeSpan.FromSeconds(60);
        var tls = TlsFiles.FromOptions(values.GetValueOrDefault("--tls-ca"), values.GetValueOrDefault("--tls-cert"), values.GetValueOrDefault("--tls-key"));
        return new VolumeHostAgentOptions
        {
            SocketPath = socket,
            StateDir = values.GetValueOrDefault("--state-dir") ?? Path.GetDirectoryName(socket)!,
            VolumeHosts = new VolumeHostConfig(masters, nodeId, wait, tls),
        };
    }
}
