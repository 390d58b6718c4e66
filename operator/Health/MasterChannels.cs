using System.Collections.Concurrent;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;

namespace FeitianK8s.Operator.Health;

/// <summary>One long-lived gRPC channel per master address ("host:port" or a URL; plain HTTP/2 when no scheme is given).</summary>
public sealed class MasterChannels : IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public static string Url(string address) => address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;

    public Master.MasterClient Client(string address) => new(_channels.GetOrAdd(Url(address), Create));

    /// <summary>Reconnects to a restarted master within about a second (the library's default backs off to 120 s).</summary>
    private static GrpcChannel Create(string url) => GrpcChannel.ForAddress(url, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(2), EnableMultipleHttp2Connections = true },
        DisposeHttpClient = true,
        InitialReconnectBackoff = TimeSpan.FromMilliseconds(100),
        MaxReconnectBackoff = TimeSpan.FromSeconds(1),
    });

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
        _channels.Clear();
    }
}
