using System.Collections.Concurrent;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;

namespace FeitianK8s.Operator.Health;

/// <summary>One long-lived gRPC channel per master address ("host:port" or a URL; plain HTTP/2 when no scheme is given).</summary>
public sealed class MasterChannels : IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public static string Url(string address) => address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;

    public Master.MasterClient Client(string address) => new(_channels.GetOrAdd(Url(address), GrpcChannel.ForAddress));

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
        _channels.Clear();
    }
}
