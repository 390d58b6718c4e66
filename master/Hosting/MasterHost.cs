using FeitianK8s.Core.Common;
using System.Net;
using FeitianK8s.Master.Cluster;
using FeitianK8s.Master.Api;
using FeitianK8s.Master.Rebuild;
using FeitianK8s.Master.State;
using FeitianK8s.Core.Pangu;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace FeitianK8s.Master;

/// <summary>
/// A running master: recovered metadata, gRPC on an HTTP/2-only endpoint, /metrics and
/// /healthz on an HTTP/1 endpoint. Used in-process by tests and the CLI, and by Program.
/// </summary>
public sealed class MasterHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly MasterMetadata _metadata;
    private readonly ILogger _logger;
    private readonly RebuildScheduler _rebuild;
    private readonly GrpcChannelCache _channels;
    private int _stopped;
    private Web.WebConsole? _console;

    private MasterHost(WebApplication app, MasterMetadata metadata, RebuildScheduler rebuild, GrpcChannelCache channels, string grpcAddress, string httpAddress, ILogger logger)
    {
        _app = app;
        _metadata = metadata;
        _rebuild = rebuild;
        _channels = channels;
        GrpcAddress = grpcAddress;
        HttpAddress = httpAddress;
        _logger = logger;
    }

    public string GrpcAddress { get; }
    public string HttpAddress { get; }

    /// <summary>The re-replication scheduler (its progress, and events for a server declared dead or redundancy restored).</summary>
    public RebuildScheduler Rebuild => _rebuild;

    public static async Task<MasterHost> StartAsync(MasterOptions options, ILoggerFactory? loggers = null, CancellationToken ct = default)
    {
        options.Validate();
        loggers ??= NullLoggerFactory.Instance;
        var logger = loggers.CreateLogger<MasterHost>();
        var address = IPAddress.Parse(options.ListenAddress);
        // The gRPC address must be known before joining the Raft group (followers name it as the leader's).
        var grpcPort = options.GrpcPort != 0 ? options.GrpcPort : FreePort(address);
        var grpcAddress = options.AdvertiseAddress ?? $"{(options.Tls is null ? "http" : "https")}://{FormatHost(address)}:{grpcPort}";
        // Known before joining too: followers redirect the web console to the leader's.
        var httpPort = options.HttpPort != 0 ? options.HttpPort : FreePort(address);
        var advertisedHttp = options.AdvertiseHttpAddress ?? AdvertisedHttp(options.AdvertiseAddress, address, httpPort);
        var metadata = await MasterMetadata.StartAsync(RaftSettings(options, address) with { HttpAddress = advertisedHttp, Tls = options.Tls }, options.DataDirectory, grpcAddress,
            options.Clock, options.SnapshotEveryCommands, loggers, ct).ConfigureAwait(false);
        WebApplication? app = null;
        var channels = new GrpcChannelCache(16 * 1024 * 1024, loggers, options.Tls);
        try
        {
            var liveness = new ChunkServerLiveness(options.Clock, options.HeartbeatTimeout, options.ReportGrace);
            // A new leader's liveness samples are missing or stale: give chunk servers a report period.
            metadata.BecameLeader += _ => liveness.StartGrace();
            var identity = new MasterIdentity();
            var dead = new DeadServerDetector(liveness, options.Clock, options.DeadAfter);
            metadata.BecameLeader += _ => dead.Restart();
            var nodeLeases = new NodeLeases(options.Clock);
            metadata.BecameLeader += _ => nodeLeases.Restart();
            var progress = new RebuildProgress(options.Clock);
            var reports = new ChunkServerReports();
            var rebuild = new RebuildScheduler(metadata, liveness, dead, channels, RebuildSettings.Default(options.DeadAfter, options.MaxRebuilds),
                () => options.IsLeader() && metadata.IsLeader, progress, loggers);
            var metrics = new Hosting.MasterMetrics();
            metrics.Attach(metadata, liveness);
            metrics.AttachRebuild(rebuild, dead, metadata);

            var builder = ServerHostBuilder.CreateSlim();
            builder.Logging.ClearProviders();
            // The caller owns signals (Program) or the process (tests): the host must not.
            builder.Services.AddSingleton<IHostLifetime, PassiveHostLifetime>();
            builder.Services.AddSingleton(loggers);
            builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
            builder.Services.AddSingleton(options);
            builder.Services.AddSingleton(metadata);
            builder.Services.AddSingleton(liveness);
            builder.Services.AddSingleton(identity);
            builder.Services.AddSingleton(dead);
            builder.Services.AddSingleton(progress);
            builder.Services.AddSingleton(reports);
            builder.Services.AddSingleton(nodeLeases);
            builder.Services.AddSingleton(new ChunkAllocator(metadata, liveness, options.ChunkSizeBytes));
            var queries = new Web.ClusterQueries(liveness, dead, progress, reports);
            builder.Services.AddSingleton(queries);
            if (options.Tls is { } tls)
            {
                builder.Services.AddSingleton(tls);
                builder.Services.AddSingleton(Core.Security.RpcRoleTable.Default);
                builder.Services.AddSingleton(new Core.Security.RpcRefusals(metrics.Registry, "master"));
            }
            builder.Services.AddGrpc(grpc =>
            {
                grpc.MaxReceiveMessageSize = 16 * 1024 * 1024;
                grpc.EnableDetailedErrors = false;
                if (options.Tls is not null)
                {
                    grpc.Interceptors.Add<Core.Security.RpcAuthorizationInterceptor>();
                }
            });
            var listeners = new GrpcAndHttpListeners();
            builder.WebHost.ConfigureKestrel(kestrel =>
            {
                listeners.Bind(kestrel, address, grpcPort, httpPort, options.Tls, http1OnTls: true);
                kestrel.Limits.MaxRequestBodySize = 16 * 1024 * 1024;
            });

            app = builder.Build();
            app.MapGrpcService<MasterService>();
            app.MapGet("/healthz", () => metadata.IsHealthy
                ? Results.Text("ok\n")
                : Results.Text("master log failed\n", statusCode: StatusCodes.Status503ServiceUnavailable));
            app.MapMetrics("/metrics", metrics.Registry);
            var backups = new Web.ConsoleBackups(options.BackupTarget, options.Clock, loggers.CreateLogger<Web.ConsoleBackups>());
            LogBackupTarget(options.BackupTarget, logger);
            var webConsole = new Web.WebConsole(metadata, queries, identity, backups, loggers)
            {
                Tls = options.Tls,
                Access = options.Tls is null ? null
                    : new Web.ConsoleAccess(options.Tls, app.Services.GetRequiredService<Core.Security.RpcRefusals>(), loggers.CreateLogger<Web.ConsoleAccess>()),
                Forwarder = options.Tls is null ? null : new Web.LeaderConsoleForwarder(options.Tls, loggers.CreateLogger<Web.LeaderConsoleForwarder>()),
            };
            webConsole.Map(app);
            await app.StartAsync(ct).ConfigureAwait(false);

            var httpAddress = listeners.HttpAddress;
            if (options.RaftPeers.Count <= 1)
            {
                // A master alone is its own majority: serve only once it leads, as before Raft.
                using var election = CancellationTokenSource.CreateLinkedTokenSource(ct);
                election.CancelAfter(TimeSpan.FromSeconds(60));
                await metadata.WaitForLeadershipAsync(election.Token).ConfigureAwait(false);
            }
            identity.GrpcAddress = grpcAddress;
            rebuild.Start();
            logger.LogInformation("Master serving gRPC on {GrpcAddress} and HTTP on {HttpAddress}, data in {DataDirectory}; chunk servers are dead after {DeadAfter}, at most {MaxRebuilds} rebuild copies at once",
                grpcAddress, httpAddress, options.DataDirectory, options.DeadAfter, options.MaxRebuilds);
            return new MasterHost(app, metadata, rebuild, channels, grpcAddress, httpAddress, logger) { _console = webConsole };
        }
        catch
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
            await metadata.DisposeAsync().ConfigureAwait(false);
            channels.Dispose();
            throw;
        }
    }

    /// <summary>The running Raft member (tests and status).</summary>
    public MasterMetadata Metadata => _metadata;

    /// <summary>Says which target the console lists, and whether credentials are present (never what they are).</summary>
    private static void LogBackupTarget(Web.ConsoleBackupTarget? target, ILogger logger)
    {
        if (target is null)
        {
            logger.LogInformation("The console lists no backups (no --backup-target)");
            return;
        }
        var credentials = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Core.Backup.BackupStoreOptions.AccessKeyVariable))
            && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Core.Backup.BackupStoreOptions.SecretKeyVariable));
        if (credentials)
        {
            logger.LogInformation("The console lists the backups in {Target}", target);
        }
        else
        {
            logger.LogWarning("The console lists the backups in {Target}, but {AccessKey}/{SecretKey} are not set: /api/backups will answer 502",
                target, Core.Backup.BackupStoreOptions.AccessKeyVariable, Core.Backup.BackupStoreOptions.SecretKeyVariable);
        }
    }

    private static MasterRaftSettings RaftSettings(MasterOptions options, IPAddress address)
    {
        if (options.RaftPeers.Count == 0)
        {
            var self = $"{FormatHost(address)}:{(options.RaftPort != 0 ? options.RaftPort : FreePort(address))}";
            // Nobody to wait for: elect at once.
            return new MasterRaftSettings(Raft.RaftPeers.Parse([self], self), options.ListenAddress, TimeSpan.FromMilliseconds(150));
        }
        return new MasterRaftSettings(Raft.RaftPeers.Parse(options.RaftPeers, options.RaftEndpoint!), options.ListenAddress, options.ElectionTimeout);
    }

    private static string AdvertisedHttp(string? advertisedGrpc, IPAddress address, int httpPort) =>
        advertisedGrpc is not null && Uri.TryCreate(advertisedGrpc, UriKind.Absolute, out var grpc)
            ? $"{grpc.Scheme}://{grpc.Host}:{httpPort}"
            : $"http://{FormatHost(address)}:{httpPort}";

    private static string FormatHost(IPAddress address) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();

    /// <summary>A port free right now on <paramref name="address"/> (for listeners that must be named before they bind).</summary>
    private static int FreePort(IPAddress address) => Core.Common.ListenPorts.Pick(address);

    /// <summary>Stops serving, leaves the Raft group, closes the WAL.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }
        try
        {
            await _rebuild.DisposeAsync().ConfigureAwait(false);
            await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _console?.Dispose();
            await _metadata.DisposeAsync().ConfigureAwait(false);
            _channels.Dispose();
            _logger.LogInformation("Master on {GrpcAddress} stopped", GrpcAddress);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>A host lifetime that reacts to no signal: stopping is the owner's call.</summary>
internal sealed class PassiveHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
