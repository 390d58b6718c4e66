using System.Collections.Concurrent;
using FeitianK8s.Core.Common;
using Grpc.Net.Client;

namespace FeitianK8s.ChunkServer.Replication;

/// <summary>One gRPC channel per peer address, reused across copies and closed with the server.</summary>
public sealed class PeerChannels(Core.Security.ComponentTls? tls = null) : IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public GrpcChannel For(string address)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"peer address '{address}' is not an http(s) URL");
        }
        return _channels.GetOrAdd(address, a => GrpcChannels.Create(a, maxMessageBytes: 8 << 20, tls: tls));
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
