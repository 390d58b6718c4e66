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
    /// TCP connect plus TLS handshake: a peer that does not answer still fails after <see cref="ConnectTimeout"/>
    /// (the TCP part), but a handshake on a busy machine (a freshly started process JIT-compiling its TLS
    /// stack) is given longer, or the first calls fail with CANCELLED.
    /// </summary>
    public static readonly TimeSpan TlsConnectTimeout = TimeSpan.FromSeconds(15);

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
            handler.ConnectTimeout = TlsConnectTimeout;
            handler.ConnectCallback = ConnectWithinAsync;
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

    /// <summary>The TCP connection alone, within <see cref="ConnectTimeout"/>.</summary>
    private static async ValueTask<Stream> ConnectWithinAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ConnectTimeout);
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(context.DnsEndPoint, timeout.Token).ConfigureAwait(false);
            return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The https:// form of an http:// address (others unchanged).</summary>
    public static string Secure(string address) =>
        address.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? "https://" + address["http://".Length..] : address;
}
