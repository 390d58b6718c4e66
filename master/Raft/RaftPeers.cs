using System.Globalization;
using System.Net;

namespace FeitianK8s.Master.Raft;

/// <summary>
/// The Raft group of the masters: every member's Raft endpoint and this member's own.
/// Endpoints are written host:port, optionally with a tcp:// or http:// prefix; a host
/// that is not an IP address is resolved by DNS (a StatefulSet's stable names).
/// </summary>
public sealed record RaftPeers(IReadOnlyList<EndPoint> Members, EndPoint Self)
{
    public static RaftPeers Parse(IEnumerable<string> members, string self)
    {
        var parsed = members.Select(ParseEndPoint).ToList();
        if (parsed.Count == 0)
        {
            throw new ArgumentException("the Raft group needs at least one member");
        }
        if (parsed.Count is not (1 or 3 or 5))
        {
            throw new ArgumentException($"the Raft group needs 1, 3 or 5 members, not {parsed.Count}");
        }
        if (parsed.Distinct().Count() != parsed.Count)
        {
            throw new ArgumentException("the Raft members are not distinct");
        }
        var own = ParseEndPoint(self);
        if (!parsed.Contains(own))
        {
            throw new ArgumentException($"this master's Raft endpoint {self} is not one of the members {string.Join(",", members)}");
        }
        return new RaftPeers(parsed, own);
    }

    public static EndPoint ParseEndPoint(string text)
    {
        var value = text.Trim();
        foreach (var scheme in new[] { "tcp://", "http://", "https://" })
        {
            if (value.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
            {
                value = value[scheme.Length..];
            }
        }
        value = value.TrimEnd('/');
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"Raft endpoint '{text}' is not host:port");
        }
        var host = value[..colon].Trim('[', ']');
        return IPAddress.TryParse(host, out var ip) ? new IPEndPoint(ip, port) : new DnsEndPoint(host, port);
    }

    public static string Format(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.ToString(),
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => endPoint.ToString() ?? "",
    };
}
