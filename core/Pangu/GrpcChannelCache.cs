using System.Collections.Concurrent;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>One long-lived <see cref="GrpcChannel"/> per address, shared by every call to it.</summary>
public sealed class GrpcChannelCache(int maxMessageBytes, ILoggerFactory loggerFactory) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<GrpcChannel>> _channels = new(StringComparer.Ordinal);

    public GrpcChannel Get(string address)
    {
        if (string.IsNullOrWhiteSpace(address))
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, "empty gRPC address");
        }
        return _channels.GetOrAdd(address, a => new Lazy<GrpcChannel>(() => Create(a))).Value;
    }

    private GrpcChannel Create(string address)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(15),
        };
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = maxMessageBytes,
            MaxSendMessageSize = maxMessageBytes,
            LoggerFactory = loggerFactory,
        });
    }

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
