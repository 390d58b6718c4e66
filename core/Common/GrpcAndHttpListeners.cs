using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Security;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace FeitianK8s.Core.Common;

/// <summary>
/// The two endpoints every server binds: gRPC on an HTTP/2-only listener (cleartext
/// HTTP/2 needs prior knowledge, so it cannot share a port with HTTP/1) and
/// /metrics + /healthz on an HTTP/1 listener. Ports may be 0; the bound addresses are
/// known once the server has started. With TLS the gRPC listener is HTTPS with client
/// certificates (checked per call, see <see cref="RpcAuthorizationInterceptor"/>); /metrics and
/// /healthz stay plain HTTP for scrapers and probes. A master also serves its web console on the
/// TLS gRPC port (<c>http1OnTls</c>): ALPN picks HTTP/2 for gRPC clients and HTTP/1.1 for others.
/// </summary>
public sealed class GrpcAndHttpListeners
{
    private ListenOptions? _grpc;
    private ListenOptions? _http;

    private bool _tls;

    /// <param name="grpcConnections">Runs first on every connection of the gRPC port (after TLS): may serve a connection itself or pass it on.</param>
    public void Bind(KestrelServerOptions kestrel, IPAddress address, int grpcPort, int httpPort, ComponentTls? tls = null, bool http1OnTls = false,
        Func<Microsoft.AspNetCore.Connections.ConnectionDelegate, Microsoft.AspNetCore.Connections.ConnectionDelegate>? grpcConnections = null)
    {
        _tls = tls is not null;
        kestrel.Listen(address, grpcPort, listen =>
        {
            // Cleartext HTTP/2 needs prior knowledge, so only a TLS port (ALPN) may add HTTP/1.1.
            listen.Protocols = tls is not null && http1OnTls ? HttpProtocols.Http1AndHttp2 : HttpProtocols.Http2;
            if (tls is not null)
            {
                listen.UseHttps(tls.ServerOptions());
            }
            if (grpcConnections is not null)
            {
                listen.Use(grpcConnections);
            }
            _grpc = listen;
        });
        kestrel.Listen(address, httpPort, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            _http = listen;
        });
    }

    /// <summary>e.g. http://127.0.0.1:40123 (https:// with TLS), valid after the server started.</summary>
    public string GrpcAddress => UrlOf(_grpc, _tls ? "https" : "http");

    public string HttpAddress => UrlOf(_http, "http");

    public int GrpcPort => EndPointOf(_grpc).Port;

    private static string UrlOf(ListenOptions? listen, string scheme)
    {
        var endpoint = EndPointOf(listen);
        var host = endpoint.Address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]" : endpoint.Address.ToString();
        return $"{scheme}://{host}:{endpoint.Port}";
    }

    private static IPEndPoint EndPointOf(ListenOptions? listen) =>
        listen?.IPEndPoint ?? throw new InvalidOperationException("the listener is not bound to an IP endpoint yet");
}
