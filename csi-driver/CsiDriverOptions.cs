using FeitianK8s.Csi.Common;
namespace FeitianK8s.Csi;

public enum CsiMode { Controller, Node, All }

/// <summary>
/// Command line: <c>--endpoint unix:///path/csi.sock --mode controller|node|all --node-id NODE
/// --masters HOST:PORT[,…] [--rack RACK] [--state-dir DIR] [--master-wait SECONDS] [--snapshot-endpoint URL
/// --snapshot-bucket NAME [--snapshot-region REGION]] [--metrics-port PORT] [--volume-host-agent PATH]</c>; the snapshot target also from the
/// environment (see <see cref="FeitianK8s.Csi.SnapshotTarget"/>).
/// </summary>
public sealed class CsiDriverOptions
{
    public const string DriverName = "feitian.csi.k8s.io";

    /// <summary>Path of the unix socket to serve on.</summary>
    public required string SocketPath { get; init; }
    public CsiMode Mode { get; init; } = CsiMode.All;
    public required string NodeId { get; init; }
    /// <summary>Master gRPC addresses, normalized to http://HOST:PORT.</summary>
    public required IReadOnlyList<string> Masters { get; init; }
    /// <summary>Rack the node plugin registers with the master (informational; not a topology segment).</summary>
    public string Rack { get; init; } = "";
    /// <summary>Where the node plugin keeps one JSON file per staged volume and its NBD sockets.</summary>
    public string StateDir { get; init; } = "/var/lib/feitian-csi";
    public int MaxVolumesPerNode { get; init; } = 64;
    /// <summary>`--master-wait SECONDS`: how long master calls (and the volume hosts' writes) wait for a master before failing.</summary>
    public TimeSpan MasterUnavailableRetry { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>
    /// `--tls-ca/--tls-cert/--tls-key`: the certificate (role csi-controller or csi-node) presented to
    /// masters and chunk servers, also handed to the volume hosts; null = plain HTTP/2.
    /// </summary>
    public Core.Security.ComponentTls? Tls { get; init; }

    /// <summary>Where snapshot backups go; null when none was configured.</summary>
    public SnapshotTarget? SnapshotTarget { get; init; }
    /// <summary>`--metrics-port PORT`: serve /metrics over HTTP on every address at PORT (0 = one the OS picks); null = no metrics listener.
    /// The node plugin's includes every staged volume's per-volume series.</summary>
    public int? MetricsPort { get; init; }

    /// <summary>
    /// `--volume-host-agent PATH`: the unix socket of this node's volume-host agent
    /// (<c>--mode volume-host</c>), which then runs the volumes' helpers so that they outlive this
    /// plugin's container; null = the plugin starts them itself as detached processes.
    /// </summary>
    public string? VolumeHostAgentSocket { get; init; }

    public const int DefaultNodeLeaseSeconds = 15;

    /// <summary>
    /// Node mode: the node's presence lease with the master, renewed every third of it. Once it has
    /// expired, a volume this node holds may be published to another node (which fences this one).
    /// 0 = no node lease: this node's volumes are never taken over.
    /// </summary>
    public int NodeLeaseSeconds { get; init; } = DefaultNodeLeaseSeconds;

    public bool RunsController => Mode is CsiMode.Controller or CsiMode.All;
    public bool RunsNode => Mode is CsiMode.Node or CsiMode.All;

    /// <summary>Parses the command line and the process environment; throws <see cref="ArgumentException"/> with the reason.</summary>
    public static CsiDriverOptions Parse(IReadOnlyList<string> args) => Parse(args, Environment.GetEnvironmentVariable);

    /// <summary>Parses the command line, reading environment variables through <paramref name="environment"/>.</summary>
    public static CsiDriverOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        string[] known =
        [
            "--endpoint", "--mode", "--node-id", "--masters", "--rack", "--state-dir", "--max-volumes",
            "--snapshot-endpoint", "--snapshot-bucket", "--snapshot-region", "--master-wait", "--metrics-port", "--node-lease-seconds",
            "--tls-ca", "--tls-cert", "--tls-key", "--volume-host-agent",
        ];
        var values = OptionArgs.Parse(args, known, "known");
        var endpoint = values.GetValueOrDefault("--endpoint") ?? throw new ArgumentException("--endpoint unix:///path/csi.sock is required");
        var mode = values.GetValueOrDefault("--mode", "all") switch
        {
            "controller" => CsiMode.Controller,
            "node" => CsiMode.Node,
            "all" => CsiMode.All,
            var other => throw new ArgumentException($"--mode must be controller, node or all (got '{other}')"),
        };
        var nodeId = values.GetValueOrDefault("--node-id") ?? "";
        if (mode != CsiMode.Controller && nodeId.Length == 0)
        {
            throw new ArgumentException("--node-id is required in node and all modes");
        }
        var masters = ParseMasters(values.GetValueOrDefault("--masters") ?? throw new ArgumentException("--masters HOST:PORT[,...] is required"));
        var maxVolumes = 64;
        if (values.TryGetValue("--max-volumes", out var mv) && (!int.TryParse(mv, out maxVolumes) || maxVolumes < 1))
        {
            throw new ArgumentException($"--max-volumes must be a positive integer (got '{mv}')");
        }
        var leaseSeconds = DefaultNodeLeaseSeconds;
        if (values.TryGetValue("--node-lease-seconds", out var ls) && (!int.TryParse(ls, out leaseSeconds) || leaseSeconds is < 0 or > 3600))
        {
            throw new ArgumentException($"--node-lease-seconds must be 0 (no node lease) to 3600 (got '{ls}')");
        }
        return new CsiDriverOptions
        {
            NodeLeaseSeconds = leaseSeconds,
            VolumeHostAgentSocket = values.TryGetValue("--volume-host-agent", out var agent) ? ParseAgentSocket(agent) : null,
            SocketPath = ParseEndpoint(endpoint),
            Mode = mode,
            NodeId = nodeId.Length > 0 ? nodeId : Environment.MachineName,
            Masters = masters,
            Rack = values.GetValueOrDefault("--rack", ""),
            StateDir = values.GetValueOrDefault("--state-dir", "/var/lib/feitian-csi"),
            MaxVolumesPerNode = maxVolumes,
            MasterUnavailableRetry = values.TryGetValue("--master-wait", out var wait) ? ParseMasterWait(wait) : TimeSpan.FromSeconds(60),
            SnapshotTarget = SnapshotTarget.From(values, environment),
            MetricsPort = values.TryGetValue("--metrics-port", out var port) ? ParseMetricsPort(port) : null,
            Tls = Core.Security.ComponentTls.FromFlags(values.GetValueOrDefault("--tls-ca"), values.GetValueOrDefault("--tls-cert"), values.GetValueOrDefault("--tls-key"),
                mode == CsiMode.Node ? [Core.Security.ComponentRoles.CsiNode] : [Core.Security.ComponentRoles.CsiController, Core.Security.ComponentRoles.CsiNode]),
        };
    }

    private static string ParseAgentSocket(string text) =>
        Path.IsPathFullyQualified(text) ? text : throw new ArgumentException($"--volume-host-agent must be the absolute path of the agent's unix socket (got '{text}')");

    private static int ParseMetricsPort(string text)
    {
        if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            throw new ArgumentException($"--metrics-port must be a TCP port from 0 to 65535 (got '{text}')");
        }
        return port;
    }

    /// <summary>A positive number of seconds, e.g. 60 or 2.5.</summary>
    public static TimeSpan ParseMasterWait(string text) =>
        double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0 && seconds <= 86_400
            ? TimeSpan.FromSeconds(seconds)
            : throw new ArgumentException($"--master-wait must be a positive number of seconds (got '{text}')");

    /// <summary>unix:///path or unix:/path or a plain absolute path → the socket path.</summary>
    public static string ParseEndpoint(string endpoint)
    {
        string path;
        if (endpoint.StartsWith("unix://", StringComparison.Ordinal))
        {
            path = endpoint["unix://".Length..];
        }
        else if (endpoint.StartsWith("unix:", StringComparison.Ordinal))
        {
            path = endpoint["unix:".Length..];
        }
        else
        {
            path = endpoint;
        }
        if (!path.StartsWith('/'))
        {
            throw new ArgumentException($"--endpoint '{endpoint}' is not unix:///absolute/path");
        }
        return path;
    }

    /// <summary>HOST:PORT or http(s)://HOST:PORT, comma-separated → http://HOST:PORT list.</summary>
    public static IReadOnlyList<string> ParseMasters(string masters)
    {
        var list = new List<string>();
        foreach (var raw in masters.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var trimmed = raw.TrimEnd('/');
            var address = trimmed.Contains("://", StringComparison.Ordinal) ? trimmed : "http://" + trimmed;
            if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Host.Length == 0 || !address.EndsWith(":" + uri.Port, StringComparison.Ordinal))
            {
                throw new ArgumentException($"--masters entry '{raw}' is not HOST:PORT");
            }
            list.Add($"{uri.Scheme}://{uri.Authority}");
        }
        if (list.Count == 0)
        {
            throw new ArgumentException("--masters is empty");
        }
        return list;
    }
}
