using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace FeitianK8s.Core.Common;

/// <summary>
/// The two endpoints every server binds: gRPC on an HTTP/2-only listener (cleartext
/// HTTP/2 needs prior knowledge, so it cannot share a port with HTTP/1) and
/// /metrics + /healthz on an HTTP/1 listener. Ports may be 0; the bound addresses are
/// known once the server has started.
/// </summary>
public sealed class GrpcAndHttpListeners
{
    private ListenOptions? _grpc;
    private ListenOptions? _http;

    public void Bind(KestrelServerOptions kestrel, IPAddress address, int grpcPort, int httpPort)
    {
        kestrel.Listen(address, grpcPort, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            _grpc = listen;
        });
        kestrel.Listen(address, httpPort, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            _http = listen;
        });
    }

    /// <summary>e.g. http://127.0.0.1:40123, valid after the server started.</summary>
    public string GrpcAddress => UrlOf(_grpc);

    public string HttpAddress => UrlOf(_http);

    public int GrpcPort => EndPointOf(_grpc).Port;

    private static string UrlOf(ListenOptions? listen)
    {
        var endpoint = EndPointOf(listen);
        var host = endpoint.Address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]" : endpoint.Address.ToString();
        return $"http://{host}:{endpoint.Port}";
    }

    private static IPEndPoint EndPointOf(ListenOptions? listen) =>
        listen?.IPEndPoint ?? throw new InvalidOperationException("the listener is not bound to an IP endpoint yet");
}
