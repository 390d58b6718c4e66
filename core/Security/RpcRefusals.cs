using Prometheus;

namespace FeitianK8s.Core.Security;

/// <summary>
/// feitian_&lt;component&gt;_rpc_refused_total{reason, method, role}: calls refused for a missing or
/// untrusted certificate, or a role the method does not allow.
/// </summary>
public sealed class RpcRefusals(CollectorRegistry registry, string component)
{
    public const string NoCertificate = "no-certificate";
    public const string Untrusted = "untrusted-certificate";
    public const string WrongRole = "wrong-role";

    private readonly Counter _refused = Metrics.WithCustomRegistry(registry).CreateCounter(
        $"feitian_{component}_rpc_refused_total",
        "gRPC calls refused by mutual TLS: no client certificate, one not issued by the cluster CA, or a role the method does not allow.",
        new CounterConfiguration { LabelNames = ["reason", "method", "role"] });

    public void Count(string reason, string method, string role) => _refused.WithLabels(reason, method, role).Inc();

    public double Total(string reason) => _refused.GetAllLabelValues().Where(l => l[0] == reason).Sum(l => _refused.WithLabels(l).Value);
}
