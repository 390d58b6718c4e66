using FeitianK8s.Core.Security;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Common;

/// <summary>
/// Creates gRPC channels that find a restarted peer again within about a second. Grpc.Net.Client's
/// defaults back off reconnects from 1 s up to 120 s, so a chunk server whose master was down
/// for a minute kept failing heartbeats long after the master was back; here a reconnect is tried
/// at most <see cref="MaxReconnectBackoff"/> after the previous one, and a connect attempt to a peer
/// that does not answer gives up after <see cref="ConnectTimeout"/>.
/// </summary>
public static class GrpcChannels
{
    public static readonly TimeSpan InitialReconnectBackoff = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan MaxReconnectBackoff = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A channel to <paramref name="address"/> (http(s)://host:port) with the reconnect settings above. With
    /// <paramref name="tls"/> the channel presents that certificate and accepts only a server of the cluster
    /// CA, whatever scheme the address names (an http:// address is dialled as https://): with TLS on,
    /// nothing goes out in clear text.
    /// </summary>
    public static GrpcChannel Create(string address, int maxMessageBytes = 16 * 1024 * 1024, ILoggerFactory? loggerFactory = null, ComponentTls? tls = null)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            ConnectTimeout = ConnectTimeout,
            // A peer that stopped answering (SIGSTOP, network) is noticed by its missing pings too.
            KeepAlivePingDelay = TimeSpan.FromSeconds(10),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
        };
        if (tls is not null)
        {
            handler.SslOptions = tls.ClientOptions(ComponentTls.ServerRoles);
            address = Secure(address);
        }
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = maxMessageBytes,
            MaxSendMessageSize = maxMessageBytes,
            InitialReconnectBackoff = InitialReconnectBackoff,
            MaxReconnectBackoff = MaxReconnectBackoff,
            LoggerFactory = loggerFactory,
        });
    }

    /// <summary>The https:// form of an http:// address (others unchanged).</summary>
    public static string Secure(string address) =>
        address.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? "https://" + address["http://".Length..] : address;
}
