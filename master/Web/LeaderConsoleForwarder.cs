using System.Net;
using FeitianK8s.Core.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Web;

/// <summary>
/// A follower's side of the console with TLS: it fetches the page or document from the leader's
/// console (the leader's gRPC address, HTTPS) with its own master certificate and answers with it,
/// so a client that reaches any master (e.g. `kubectl port-forward svc/NAME-master`) sees the
/// leader's data without having to resolve the leader's name. A forwarded request carries
/// <see cref="ForwardedHeader"/>; a master that is not the leader either answers it with 503
/// instead of forwarding again (no loops during an election).
/// </summary>
public sealed class LeaderConsoleForwarder : IDisposable
{
    /// <summary>Marks a request a follower forwarded to the leader.</summary>
    public const string ForwardedHeader = "Feitian-Console-Forwarded";

    /// <summary>On a forwarded answer: the gRPC address of the leader that produced it.</summary>
    public const string LeaderHeader = "Feitian-Console-Leader";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly HttpClient _http;
    private readonly ILogger _log;

    public LeaderConsoleForwarder(ComponentTls tls, ILogger<LeaderConsoleForwarder> log)
    {
        _log = log;
        _http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = tls.ClientOptions(ComponentRoles.Master),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            AllowAutoRedirect = false,
            UseCookies = false,
        })
        { Timeout = Timeout, DefaultRequestVersion = HttpVersion.Version11 };
    }

    public static bool IsForwarded(HttpContext http) => http.Request.Headers.ContainsKey(ForwardedHeader);

    public async Task<IResult> ForwardAsync(HttpContext http, string leaderGrpcAddress)
    {
        // With TLS every master's gRPC port is HTTPS, whatever scheme an --advertise flag was written with.
        var leader = leaderGrpcAddress.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? "https://" + leaderGrpcAddress["http://".Length..] : leaderGrpcAddress;
        var target = $"{leader.TrimEnd('/')}{http.Request.Path}{http.Request.QueryString}";
        using var request = new HttpRequestMessage(HttpMethod.Get, target);
        request.Headers.Add(ForwardedHeader, "1");
        try
        {
            using var response = await _http.SendAsync(request, http.RequestAborted).ConfigureAwait(false);
            var body = await response.Content.ReadAsByteArrayAsync(http.RequestAborted).ConfigureAwait(false);
            return new ForwardedAnswer((int)response.StatusCode, response.Content.Headers.ContentType?.ToString(), body, leaderGrpcAddress);
        }
        catch (Exception error) when ((error is HttpRequestException or TaskCanceledException) && !http.RequestAborted.IsCancellationRequested)
        {
            _log.LogWarning("Forwarding console {Path} to the leader {Leader} failed: {Error}", http.Request.Path, leaderGrpcAddress, error.Message);
            return Results.Json(new { error = $"this master is a follower and cannot reach the leader {leaderGrpcAddress}: {error.Message}" },
                statusCode: StatusCodes.Status502BadGateway);
        }
    }

    public void Dispose() => _http.Dispose();

    /// <summary>The leader's answer, as it came (status, content type, bytes).</summary>
    private sealed class ForwardedAnswer(int status, string? contentType, byte[] body, string leader) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            http.Response.StatusCode = status;
            if (contentType is not null)
            {
                http.Response.ContentType = contentType;
            }
            http.Response.Headers[LeaderHeader] = leader;
            http.Response.ContentLength = body.Length;
            await http.Response.Body.WriteAsync(body, http.RequestAborted).ConfigureAwait(false);
        }
    }
}
