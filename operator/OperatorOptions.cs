using FeitianK8s.Operator.Desired;

namespace FeitianK8s.Operator;

/// <summary>Command line of the operator.</summary>
public sealed class OperatorOptions
{
    /// <summary>Kubeconfig file; when absent: in-cluster config inside a pod, else $KUBECONFIG or ~/.kube/config.</summary>
    public string? Kubeconfig { get; set; }
    /// <summary>Namespace to watch StorageClusters in; null = all namespaces.</summary>
    public string? Namespace { get; set; }
    public string Listen { get; set; } = "0.0.0.0";
    /// <summary>Port of /metrics and /healthz (0 = any free port).</summary>
    public int HttpPort { get; set; } = 8080;
    public bool LeaderElect { get; set; } = true;
    public string LeaseNamespace { get; set; } = Environment.GetEnvironmentVariable("POD_NAMESPACE") ?? "default";
    public string LeaseName { get; set; } = "feitian-operator";
    public string Identity { get; set; } = Environment.GetEnvironmentVariable("POD_NAME") ?? $"{Environment.MachineName}-{Guid.NewGuid():N}"[..24];
    public int Workers { get; set; } = 2;
    /// <summary>Master gRPC address to use for every cluster instead of the in-cluster service name (out-of-cluster debugging).</summary>
    public string? MasterAddress { get; set; }
    /// <summary>How often every StorageCluster's Volume objects are compared with its master's volumes.</summary>
    public TimeSpan VolumeResyncPeriod { get; set; } = TimeSpan.FromSeconds(15);
    /// <summary>The CSI ClusterRoles the operator binds are PREFIX-controller and PREFIX-node (installed by the chart).</summary>
    public string CsiClusterRolePrefix { get; set; } = Names.DefaultCsiClusterRolePrefix;
    /// <summary>
    /// --tls-ca/--tls-cert/--tls-key: a fixed operator certificate (role operator) for every cluster's masters,
    /// instead of the one the operator issues itself from each cluster's CA Secret.
    /// </summary>
    public FeitianK8s.Core.Security.TlsFiles? TlsFiles { get; set; }
    /// <summary>
    /// --tls-dir: where the operator writes its own certificate of each cluster (DIR/NAMESPACE/NAME/tls.crt...), read back
    /// by its gRPC channels; null = a fresh directory under the temp directory, removed when the operator stops.
    /// </summary>
    public string? TlsDirectory { get; set; }
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; set; } = Microsoft.Extensions.Logging.LogLevel.Information;
    /// <summary>
    /// Failover on node loss: the leader taints nodes whose Feitian node lease expired while Kubernetes reports
    /// them NotReady (node.kubernetes.io/out-of-service). False = the operator never touches nodes.
    /// </summary>
    public bool NodeFailover { get; set; } = true;

    public const string Usage =
        "FeitianK8s.Operator [--kubeconfig FILE] [--namespace NS] [--listen ADDR] [--http-port N] [--leader-elect true|false]\n" +
        "                    [--lease-namespace NS] [--lease-name NAME] [--identity ID] [--workers N] [--master-address HOST:PORT[,HOST:PORT...]]\n" +
        "                    [--volume-resync-seconds N] [--csi-cluster-role-prefix PREFIX] [--log-level LEVEL] [--node-failover true|false]\n" +
        "                    [--tls-ca CA.crt --tls-cert operator.crt --tls-key operator.key] [--tls-dir DIR]";

    public static OperatorOptions Parse(IReadOnlyList<string> args)
    {
        var o = new OperatorOptions();
        // --flag=value is the same as --flag value.
        args = args.SelectMany(a => a.StartsWith("--", StringComparison.Ordinal) && a.IndexOf('=') is var eq and > 2 ? [a[..eq], a[(eq + 1)..]] : new[] { a }).ToList();
        string? ca = null, cert = null, key = null;
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int IntValue(string flag) => int.TryParse(Value(), out var v) && v >= 0 ? v : throw new ArgumentException($"{flag} needs a non-negative number");
            switch (args[i])
            {
                case "--kubeconfig": o.Kubeconfig = Value(); break;
                case "--namespace": o.Namespace = Value(); break;
                case "--listen": o.Listen = Value(); break;
                case "--http-port": o.HttpPort = IntValue("--http-port"); break;
                case "--leader-elect":
                    o.LeaderElect = bool.TryParse(Value(), out var b) ? b : throw new ArgumentException("--leader-elect needs true or false");
                    break;
                case "--node-failover":
                    o.NodeFailover = bool.TryParse(Value(), out var failover) ? failover : throw new ArgumentException("--node-failover needs true or false");
                    break;
                case "--lease-namespace": o.LeaseNamespace = Value(); break;
                case "--lease-name": o.LeaseName = Value(); break;
                case "--identity": o.Identity = Value(); break;
                case "--workers": o.Workers = Math.Max(1, IntValue("--workers")); break;
                case "--master-address": o.MasterAddress = Value(); break;
                case "--tls-ca": ca = Value(); break;
                case "--tls-cert": cert = Value(); break;
                case "--tls-key": key = Value(); break;
                case "--tls-dir": o.TlsDirectory = Value(); break;
                case "--volume-resync-seconds":
                    var seconds = IntValue("--volume-resync-seconds");
                    o.VolumeResyncPeriod = seconds >= 1 ? TimeSpan.FromSeconds(seconds) : throw new ArgumentException("--volume-resync-seconds needs at least 1");
                    break;
                case "--csi-cluster-role-prefix":
                    var prefix = Value();
                    o.CsiClusterRolePrefix = System.Text.RegularExpressions.Regex.IsMatch(prefix, "^[a-z0-9]([-a-z0-9.]{0,240}[a-z0-9])?$")
                        ? prefix : throw new ArgumentException("--csi-cluster-role-prefix needs a lower-case DNS name");
                    break;
                case "--log-level":
                    o.LogLevel = Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(Value(), ignoreCase: true, out var level)
                        ? level : throw new ArgumentException("--log-level needs Trace, Debug, Information, Warning or Error");
                    break;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        o.TlsFiles = FeitianK8s.Core.Security.TlsFiles.FromOptions(ca, cert, key);
        return o;
    }
}
