using System.Collections.Concurrent;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Security;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>One long-lived <see cref="GrpcChannel"/> per address, shared by every call to it (reconnecting within a second, see <see cref="GrpcChannels"/>); with <c>tls</c>, over mutual TLS.</summary>
public sealed class GrpcChannelCache(int maxMessageBytes, ILoggerFactory loggerFactory, ComponentTls? tls = null) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<GrpcChannel>> _channels = new(StringComparer.Ordinal);

    /// <summary>The certificate channels present (null: plain HTTP/2); connections beside gRPC (framed appends) use it too.</summary>
    public ComponentTls? Tls => tls;

    public int MaxMessageBytes => maxMessageBytes;

    public GrpcChannel Get(string address)
    {
        if (string.IsNullOrWhiteSpace(address))
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, "empty gRPC address");
        }
        return _channels.GetOrAdd(address, a => new Lazy<GrpcChannel>(() => Create(a))).Value;
    }

    private GrpcChannel Create(string address) => GrpcChannels.Create(address, maxMessageBytes, loggerFactory, tls);

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            if (channel.IsValueCreated)
            {
                channel.Value.Dispose();
            }
        }
        _channels.Clear();
    }
}
