using System.Net;
using System.Security.Cryptography;
using System.Text;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>
/// The web console for a browser without a client certificate: a plain HTTP server on 127.0.0.1
/// that answers GETs by fetching them from the masters' console (HTTPS on their gRPC port) with this
/// CLI's certificate. Any master will do (a follower answers with the leader's data); the proxy keeps
/// to the master that answered last, moves on to the next when one is unreachable or answers 502/503
/// (no leader known, or the leader unreachable from there; the last master's answer is passed on as it is),
/// and to the leader itself when a follower names one it was given.
/// Access needs a random token: the printed URL carries it as <c>?token=</c>; the first visit sets it
/// as an HttpOnly cookie and redirects to the same page without it. Anything else gets 401.
/// </summary>
public sealed class ConsoleProxy : IAsyncDisposable
{
    private const string ForwardedLeaderHeader = "Feitian-Console-Leader";
    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly IReadOnlyList<string> _masters;
    private readonly byte[] _token;
    private readonly ILogger _log;
    private int _current;

    private ConsoleProxy(WebApplication app, HttpClient http, IReadOnlyList<string> masters, string token, ILogger log)
    {
        _app = app;
        _http = http;
        _masters = masters;
        Token = token;
        _token = Encoding.ASCII.GetBytes(token);
        _log = log;
    }

    /// <summary>e.g. http://127.0.0.1:40123</summary>
    public string Address { get; private set; } = "";

    public string Token { get; }

    /// <summary>The URL to open: the address with the token.</summary>
    public string Url => $"{Address}/?token={Token}";

    private string CookieName => $"feitian_console_{new Uri(Address).Port}";

    public static async Task<ConsoleProxy> StartAsync(IReadOnlyList<string> masters, ComponentTls tls, int port, ILoggerFactory? loggers, CancellationToken ct)
    {
        if (masters.Count == 0)
        {
            throw new ArgumentException("the console proxy needs at least one master address");
        }
        foreach (var master in masters)
        {
            if (!Uri.TryCreate(master, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttps)
            {
                throw new ArgumentException($"master address '{master}' is not https://HOST:PORT (the console is served over TLS on the masters' gRPC port)");
            }
        }
        var log = (loggers ?? NullLoggerFactory.Instance).CreateLogger<ConsoleProxy>();
        var http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = tls.ClientOptions(ComponentRoles.Master),
            AllowAutoRedirect = false,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        })
        { Timeout = TimeSpan.FromSeconds(30) };
        var builder = ServerHostBuilder.CreateSlim();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        var proxy = new ConsoleProxy(app, http, masters, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24)), log);
        app.Run(proxy.HandleAsync);
        await app.StartAsync(ct);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        proxy.Address = address.Replace("localhost", "127.0.0.1", StringComparison.Ordinal).Replace("[::]", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/');
        return proxy;
    }

    private async Task HandleAsync(HttpContext http)
    {
        if (http.Request.Query.TryGetValue("token", out var given) && IsToken(given.ToString()))
        {
            // First visit: keep the token in a cookie the page's scripts cannot read, and drop it from the URL.
            http.Response.Cookies.Append(CookieName, Token, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/" });
            var rest = http.Request.Query.Where(q => q.Key != "token").Select(q => $"{Uri.EscapeDataString(q.Key)}={Uri.EscapeDataString(q.Value.ToString())}");
            var query = string.Join('&', rest);
            http.Response.Redirect($"{http.Request.PathBase}{http.Request.Path}{(query.Length > 0 ? "?" + query : "")}");
            return;
        }
        if (!IsToken(http.Request.Cookies[CookieName]))
        {
            await Plain(http, StatusCodes.Status401Unauthorized, "the console needs the token of the URL `feitian console` printed (open that URL)");
            return;
        }
        if (!HttpMethods.IsGet(http.Request.Method))
        {
            await Plain(http, StatusCodes.Status405MethodNotAllowed, "the console is read-only: GET only");
            return;
        }
        await ForwardAsync(http);
    }

    private bool IsToken(string? value) =>
        value is not null && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(value), _token);

    /// <summary>Tries each master once, starting with the one that answered last.</summary>
    private async Task ForwardAsync(HttpContext http)
    {
        var pathAndQuery = $"{http.Request.Path}{http.Request.QueryString}";
        string? lastError = null;
        var start = Volatile.Read(ref _current);
        for (var i = 0; i < _masters.Count; i++)
        {
            var index = (start + i) % _masters.Count;
            var master = _masters[index];
            try
            {
                using var response = await _http.GetAsync($"{master.TrimEnd('/')}{pathAndQuery}", http.RequestAborted);
                var body = await response.Content.ReadAsByteArrayAsync(http.RequestAborted);
                if (response.StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.BadGateway && i + 1 < _masters.Count)
                {
                    // Knows no leader (election, or cut off), or a follower cannot reach the one it knows: another master may do better.
                    lastError = $"{master}: {(int)response.StatusCode}";
                    continue;
                }
                Volatile.Write(ref _current, PreferredAfter(index, response));
                http.Response.StatusCode = (int)response.StatusCode;
                http.Response.ContentType = response.Content.Headers.ContentType?.ToString();
                http.Response.Headers.CacheControl = "no-store";
                await http.Response.Body.WriteAsync(body, http.RequestAborted);
                return;
            }
            catch (Exception error) when ((error is HttpRequestException or TaskCanceledException) && !http.RequestAborted.IsCancellationRequested)
            {
                lastError = $"{master}: {error.Message}";
                _log.LogWarning("Console request {Path} to {Master} failed: {Error}", pathAndQuery, master, error.Message);
            }
        }
        await Plain(http, StatusCodes.Status502BadGateway, $"no master answered the console request ({lastError})");
    }

    /// <summary>The master to ask next: the leader a follower named when it is one of ours, else the one that answered.</summary>
    private int PreferredAfter(int answered, HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues(ForwardedLeaderHeader, out var leaders))
        {
            var leader = leaders.FirstOrDefault()?.TrimEnd('/');
            for (var i = 0; i < _masters.Count; i++)
            {
                if (string.Equals(_masters[i].TrimEnd('/'), leader, StringComparison.OrdinalIgnoreCase))
                {
                    return i;
                }
            }
        }
        return answered;
    }

    private static Task Plain(HttpContext http, int status, string message)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "text/plain; charset=utf-8";
        return http.Response.WriteAsync(message + "\n", http.RequestAborted);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        _http.Dispose();
    }
}
