using System.Reflection;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Core.Views;
using FeitianK8s.Master.State;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Web;

/// <summary>
/// The read-only web console on the master's HTTP port: static pages shipped in this assembly
/// (no CDN: clusters are often offline) and JSON endpoints returning the same documents as the
/// CLI's --json (/api/status = `feitian status --json`, /api/volumes = `feitian volume ls --json`,
/// /api/snapshots = `feitian snapshot ls --json`, /api/backups = `feitian backup ls --json` of the
/// master's --backup-target with where it comes from). Only the leader answers. With TLS the console
/// is served on the HTTPS gRPC port to client certificates <see cref="ConsoleAccess"/> admits, and a
/// follower answers with what it fetched from the leader (<see cref="LeaderConsoleForwarder"/>);
/// without TLS it is on the HTTP port and a follower redirects to the leader's HTTP address. Both
/// answer 503 while no leader is known.
/// </summary>
public sealed class WebConsole(MasterMetadata metadata, ClusterQueries queries, MasterIdentity identity, ConsoleBackups backups, ILoggerFactory loggers) : IDisposable
{
    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["/"] = "index.html",
        ["/index.html"] = "index.html",
        ["/console.css"] = "console.css",
        ["/console.js"] = "console.js",
    };

    private readonly ILogger _logger = loggers.CreateLogger<WebConsole>();
    private readonly Lock _fsLock = new();

    /// <summary>The master's own certificate, for the console's calls to the masters (null without TLS).</summary>
    public Core.Security.ComponentTls? Tls { get; init; }
    private PanguClient? _fs;

    /// <summary>Who may read the console (client certificates with TLS); null admits everyone.</summary>
    public ConsoleAccess? Access { get; init; }

    /// <summary>A follower's way to the leader's console with TLS (instead of a redirect); null without TLS.</summary>
    public LeaderConsoleForwarder? Forwarder { get; init; }

    public void Map(WebApplication app)
    {
        foreach (var (path, asset) in Assets)
        {
            app.MapGet(path, (Delegate)((HttpContext http) => ServeAsync(http, _ => Task.FromResult(Asset(asset)))));
        }
        app.MapGet("/api/status", (Delegate)((HttpContext http) => ServeAsync(http, StatusAsync)));
        app.MapGet("/api/volumes", (Delegate)((HttpContext http) => ServeAsync(http, _ =>
            Task.FromResult(Json(VolumeListView.Of(metadata.Read(queries.VolumesWithHealth)))))));
        app.MapGet("/api/snapshots", (Delegate)((HttpContext http) => ServeAsync(http, SnapshotsAsync)));
        app.MapGet("/api/backups", (Delegate)((HttpContext http) => ServeAsync(http, BackupsAsync)));
    }

    /// <summary>An empty list with configured=false without a target; 502 with the reason when the object store fails.</summary>
    private async Task<IResult> BackupsAsync(CancellationToken ct)
    {
        var listing = await backups.ListAsync(ct).ConfigureAwait(false);
        return listing.View is { } view
            ? Json(view)
            : Results.Json(new { error = listing.Error }, statusCode: StatusCodes.Status502BadGateway);
    }

    private async Task<IResult> StatusAsync(CancellationToken ct)
    {
        var status = metadata.Read(queries.Status);
        var masters = await MasterStates.CollectAsync(await metadata.MemberGrpcAddressesAsync(ct).ConfigureAwait(false), ct, Tls).ConfigureAwait(false);
        return Json(StatusViews.Build(masters, status));
    }

    private async Task<IResult> SnapshotsAsync(CancellationToken ct)
    {
        try
        {
            var list = await new VolumeSnapshots(FileSystem(), FileSystem().Master, _logger).ListAsync(null, ct).ConfigureAwait(false);
            return Json(new SnapshotListView(list.Select(SnapshotView.Of).OrderBy(s => s.Name, StringComparer.Ordinal).ToList()));
        }
        catch (Exception error) when (error is PanguException or SnapshotException)
        {
            _logger.LogWarning("Listing snapshots for the console failed: {Error}", error.Message);
            return Results.Json(new { error = $"cannot list snapshots: {error.Message}" }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    /// <summary>A file-system client of this master itself (snapshot records live in Pangu files).</summary>
    private PanguClient FileSystem()
    {
        lock (_fsLock)
        {
            return _fs ??= new PanguClient(new PanguClientOptions
            {
                MasterAddresses = [identity.GrpcAddress],
                ClientNode = "master-console",
                MasterUnavailableRetry = TimeSpan.FromSeconds(5),
                Tls = Tls,
            }, loggers);
        }
    }

    /// <summary>Checks the caller (with TLS), then answers on the leader, or from the leader on a follower.</summary>
    private async Task<IResult> ServeAsync(HttpContext http, Func<CancellationToken, Task<IResult>> answer)
    {
        if (Access?.Check(http).Refusal is { } refusal)
        {
            return refusal;
        }
        if (!metadata.IsLeader)
        {
            return await NotLeaderAsync(http).ConfigureAwait(false);
        }
        try
        {
            return await answer(http.RequestAborted).ConfigureAwait(false);
        }
        catch (NotLeaderException)
        {
            return await NotLeaderAsync(http).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// With TLS: the leader's answer, fetched with this master's certificate. Without TLS: a redirect to
    /// the same path on the leader's HTTP address (307 keeps the method). 503 while no leader is known.
    /// </summary>
    private async Task<IResult> NotLeaderAsync(HttpContext http)
    {
        if (Forwarder is { } forwarder)
        {
            var leaderGrpc = metadata.LeaderAddress;
            if (string.IsNullOrEmpty(leaderGrpc) || metadata.IsLeader || LeaderConsoleForwarder.IsForwarded(http))
            {
                return NoLeader();
            }
            return await forwarder.ForwardAsync(http, leaderGrpc).ConfigureAwait(false);
        }
        var leader = metadata.LeaderHttpAddress;
        if (string.IsNullOrEmpty(leader) || metadata.IsLeader)
        {
            return NoLeader();
        }
        return Results.Redirect($"{leader.TrimEnd('/')}{http.Request.Path}{http.Request.QueryString}", permanent: false, preserveMethod: true);
    }

    private static IResult NoLeader() =>
        Results.Json(new { error = "no master leader is known right now; retry in a few seconds" }, statusCode: StatusCodes.Status503ServiceUnavailable);

    private static IResult Json<T>(T document) =>
        Results.Text(StatusJson.Serialize(document), "application/json; charset=utf-8");

    private static IResult Asset(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"console/{name}")
            ?? throw new InvalidOperationException($"console asset {name} is missing from the master assembly");
        using var reader = new StreamReader(stream);
        var type = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            _ => "text/javascript; charset=utf-8",
        };
        return Results.Text(reader.ReadToEnd(), type);
    }

    public void Dispose()
    {
        lock (_fsLock)
        {
            _fs?.Dispose();
            _fs = null;
        }
        backups.Dispose();
        Forwarder?.Dispose();
    }
}
