using System.Collections.Concurrent;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;

namespace FeitianK8s.Operator.Health;

/// <summary>
/// One long-lived gRPC channel per master address ("host:port" or a URL; plain HTTP/2 when no
/// scheme is given). An address may list every master of a Raft group, comma-separated: calls
/// go to the master believed to lead, and <see cref="Observe"/> moves that belief to the leader
/// a follower names (not-leader refusal), or to the next master when one does not answer.
/// With a TLS identity (the operator's certificate for that cluster) the channel is mutual TLS.
/// </summary>
public sealed class MasterChannels : IDisposable
{
    private readonly ConcurrentDictionary<(string Url, FeitianK8s.Core.Security.ComponentTls? Tls), GrpcChannel> _channels = new();
    private readonly ConcurrentDictionary<string, string> _leaders = new(StringComparer.Ordinal);

    public static string Url(string address) => address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;

    public static List<string> Split(string addresses) =>
        addresses.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Url).ToList();

    /// <summary>The master of <paramref name="addresses"/> that calls go to now.</summary>
    public string Current(string addresses) => _leaders.GetValueOrDefault(addresses) ?? Split(addresses).FirstOrDefault() ?? Url(addresses);

    public Master.MasterClient Client(string addresses, FeitianK8s.Core.Security.ComponentTls? tls = null) =>
        new(_channels.GetOrAdd((Current(addresses), tls), key => FeitianK8s.Core.Common.GrpcChannels.Create(key.Url, tls: key.Tls)));

    /// <summary>Follows the leader after a failed call: the named leader, else the next master of the list.</summary>
    public void Observe(string addresses, Grpc.Core.RpcException error)
    {
        var list = Split(addresses);
        if (list.Count < 2 || error.StatusCode is not (Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded))
        {
            return;
        }
        var current = Current(addresses);
        // The not-leader contract: reason "not-leader" in feitian-reason, the leader in feitian-leader.
        var hint = error.Trailers.GetValue("feitian-reason") == "not-leader" ? error.Trailers.GetValue("feitian-leader") : null;
        hint = string.IsNullOrEmpty(hint) ? null : hint;
        _leaders[addresses] = hint ?? list[(list.IndexOf(current) + 1) % list.Count];
    }

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
        _channels.Clear();
    }
}
