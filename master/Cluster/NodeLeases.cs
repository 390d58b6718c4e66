using System.Collections.Concurrent;
using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;

namespace FeitianK8s.Master.Cluster;

/// <summary>
/// Node leases (failover on node loss): the last renewal of each node as this master saw it.
/// Soft state, never logged, judged only on the leader: renewals are sent to the leader, and
/// a master that becomes leader counts every lease from that moment (<see cref="Restart"/>), so
/// a leader change can delay an expiry by one lease, never bring one forward. The lease length
/// itself is replicated (the node's record), so a new leader knows it for nodes it never heard.
/// </summary>
public sealed class NodeLeases(TimeProvider clock)
{
    public const string Live = "live";
    public const string Expired = "expired";
    public const string None = "none";

    private readonly ConcurrentDictionary<string, DateTimeOffset> _renewed = new(StringComparer.Ordinal);
    private DateTimeOffset _leadingSince = clock.GetUtcNow();

    /// <summary>This master became leader: renewals seen before went to another leader, if at all.</summary>
    public void Restart() => _leadingSince = clock.GetUtcNow();

    public void Renew(string node) => _renewed[node] = clock.GetUtcNow();

    /// <summary>The lease of a registered node as judged now.</summary>
    public NodeLeaseStatus Judge(NodeRecord node)
    {
        var status = new NodeLeaseStatus { Node = node.Id, LeaseSeconds = node.LeaseSeconds, State = None };
        var last = _renewed.TryGetValue(node.Id, out var at) ? at : (DateTimeOffset?)null;
        var since = _leadingSince;
        if (last is { } renewed && renewed >= since)
        {
            status.LastRenewedUnixMs = renewed.ToUnixTimeMilliseconds();
        }
        if (node.LeaseSeconds == 0)
        {
            return status;
        }
        // Counted from the later of the last renewal and the start of this leadership.
        var from = last is { } l && l > since ? l : since;
        var expires = from + TimeSpan.FromSeconds(node.LeaseSeconds);
        status.ExpiresUnixMs = expires.ToUnixTimeMilliseconds();
        status.State = clock.GetUtcNow() > expires ? Expired : Live;
        return status;
    }
}
