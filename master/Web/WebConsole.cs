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
/// master's --backup-target with where it comes from). Only the leader answers; a follower redirects
/// to the leader's HTTP address, and answers 503 while no leader is known.
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

    public void Map(WebApplication app)
    {
        foreach (var (path, asset) in Assets)
        {
            app.MapGet(path, (HttpContext http) => LeaderOnly(http, () => Asset(asset)));
        }
        app.MapGet("/api/status", (Delegate)((HttpContext http) => LeaderOnlyAsync(http, StatusAsync)));
        app.MapGet("/api/volumes", (HttpContext http) => LeaderOnly(http, () =>
            Json(VolumeListView.Of(metadata.Read(queries.VolumesWithHealth)))));
        app.MapGet("/api/snapshots", (Delegate)((HttpContext http) => LeaderOnlyAsync(http, SnapshotsAsync)));
        app.MapGet("/api/backups", (Delegate)((HttpContext http) => LeaderOnlyAsync(http, BackupsAsync)));
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

    private IResult LeaderOnly(HttpContext http, Func<IResult> answer) =>
        metadata.IsLeader ? Guard(http, answer) : NotLeader(http);

    private async Task<IResult> LeaderOnlyAsync(HttpContext http, Func<CancellationToken, Task<IResult>> answer)
    {
        if (!metadata.IsLeader)
        {
            return NotLeader(http);
        }
        try
        {
            return await answer(http.RequestAborted).ConfigureAwait(false);
        }
        catch (NotLeaderException)
        {
            return NotLeader(http);
        }
    }

    private IResult Guard(HttpContext http, Func<IResult> answer)
    {
        try
        {
            return answer();
        }
        catch (NotLeaderException)
        {
            return NotLeader(http);
        }
    }

    /// <summary>Redirects to the same path on the leader (307 keeps the method), or 503 while no leader is known.</summary>
    private IResult NotLeader(HttpContext http)
    {
        var leader = metadata.LeaderHttpAddress;
        if (string.IsNullOrEmpty(leader) || metadata.IsLeader)
        {
            return Results.Json(new { error = "no master leader is known right now; retry in a few seconds" }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        return Results.Redirect($"{leader.TrimEnd('/')}{http.Request.Path}{http.Request.QueryString}", permanent: false, preserveMethod: true);
    }

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
    }
}
