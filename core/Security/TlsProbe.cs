using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace FeitianK8s.Core.Security;

/// <summary>What a server port speaks, found by trying a TLS handshake (any server certificate accepted, none presented).</summary>
public enum PortProtocol
{
    Unreachable,
    Tls,
    Plain,
}

/// <summary>
/// Explains why a client got no answer when the cause is a TLS mismatch: a client without a
/// certificate (--insecure, or no --data/--tls-*) at a TLS server, or a TLS client at a plain one.
/// Both otherwise look like an unreachable server.
/// </summary>
public static class TlsProbe
{
    public static async Task<PortProtocol> ProbeAsync(string address, TimeSpan timeout, CancellationToken ct = default)
    {
        var uri = new Uri(address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(uri.Host, uri.Port, cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return PortProtocol.Unreachable;
        }
        try
        {
            await using var ssl = new SslStream(client.GetStream(), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = uri.Host,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
            }, cts.Token).ConfigureAwait(false);
            return PortProtocol.Tls;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or SocketException or OperationCanceledException)
        {
            return PortProtocol.Plain;
        }
    }

    /// <summary>The hint for a client with (<paramref name="clientHasCertificate"/>) or without a certificate at a port speaking <paramref name="protocol"/>; null when TLS is not the problem.</summary>
    public static string? Hint(string address, PortProtocol protocol, bool clientHasCertificate) => (protocol, clientHasCertificate) switch
    {
        (PortProtocol.Tls, false) =>
            $"{address} requires TLS with a client certificate of the cluster's CA{(address.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? " (the address says http:// but the server speaks TLS)" : "")}; " +
            "give one with --data DIR (the cluster's DIR/tls/admin.crt) or --tls-ca CA.crt --tls-cert admin.crt --tls-key admin.key " +
            "(or $FEITIAN_TLS_CA, $FEITIAN_TLS_CERT, $FEITIAN_TLS_KEY), without --insecure",
        (PortProtocol.Tls, true) =>
            $"{address} speaks TLS but refused this client's certificate or its certificate is not from the CA in --tls-ca: check that both come from the cluster's CA",
        (PortProtocol.Plain, true) =>
            $"{address} does not speak TLS (a cluster started with --insecure?): talk to it with --insecure",
        _ => null,
    };

    /// <summary>The hints for every address (probed in parallel), those that have one.</summary>
    public static async Task<IReadOnlyList<string>> HintsAsync(IEnumerable<string> addresses, bool clientHasCertificate, CancellationToken ct = default)
    {
        var probes = await Task.WhenAll(addresses.Select(async a => Hint(a, await ProbeAsync(a, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false), clientHasCertificate)))
            .ConfigureAwait(false);
        return probes.OfType<string>().Distinct().ToList();
    }
}
