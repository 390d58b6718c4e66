using FeitianK8s.Core.Common;
using System.Net;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Registration;
using FeitianK8s.ChunkServer.Replication;
using FeitianK8s.ChunkServer.Services;
using FeitianK8s.ChunkServer.Storage;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;
using MasterClient = FeitianK8s.Proto.Master.Master.MasterClient;

namespace FeitianK8s.ChunkServer;

/// <summary>
/// A running chunk server: the chunk store, the ChunkServer gRPC service on an HTTP/2-only endpoint,
/// /metrics and /healthz on a separate HTTP/1 endpoint, and the background registration and
/// heartbeats to the master.
/// </summary>
public sealed class ChunkServerHost : IAsyncDisposable
{
    /// <summary>Largest gRPC message: a 4 MiB append or read plus headroom.</summary>
    public const int MaxMessageBytes = 8 << 20;

    private readonly WebApplication _app;
    private readonly ChunkStore _store;
    private readonly DataDirLock _lock;
    private readonly PeerChannels _peers;
    private readonly GrpcChannel? _masterChannel;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ILogger _log;
    private Task _reporting = Task.CompletedTask;
    private Task _scrubbing = Task.CompletedTask;
    private int _stopped;

    private ChunkServerHost(string id, WebApplication app, ChunkStore store, DataDirLock dataLock, PeerChannels peers,
        GrpcChannel? masterChannel, string grpcAddress, string httpAddress, ILogger log)
    {
        Id = id;
        _app = app;
        _store = store;
        _lock = dataLock;
        _peers = peers;
        _masterChannel = masterChannel;
        GrpcAddress = grpcAddress;
        HttpAddress = httpAddress;
        _log = log;
    }

    public string Id { get; }

    /// <summary>gRPC endpoint, e.g. http://127.0.0.1:40123.</summary>
    public string GrpcAddress { get; }

    /// <summary>HTTP endpoint of /metrics and /healthz.</summary>
    public string HttpAddress { get; }

    /// <summary>The store behind the service (tests and in-process tools).</summary>
    public ChunkStore Store => _store;

    /// <summary>Flow control of copies from peers (re-replication).</summary>
    public RebuildBudget Rebuild { get; private init; } = null!;

    /// <summary>The background scrubber; null when --scrub-bandwidth is 0.</summary>
    public Scrub.Scrubber? Scrubber { get; private set; }

    /// <summary>The reporter talking to the master; null when no master address was given.</summary>
    public MasterReporter? Reporter { get; private set; }

    public static async Task<ChunkServerHost> StartAsync(ChunkServerOptions options, ILoggerFactory? loggers = null, CancellationToken ct = default)
    {
        loggers ??= NullLoggerFactory.Instance;
        if (options.DataDirs.Count == 0)
        {
            throw new ArgumentException("at least one data dir is required");
        }
        if (!IPAddress.TryParse(options.ListenAddress, out var listenIp))
        {
            throw new ArgumentException($"listen address '{options.ListenAddress}' is not an IP address");
        }
        if (options.RebuildBandwidthBytesPerSecond < 0)
        {
            throw new ArgumentException($"rebuild bandwidth {options.RebuildBandwidthBytesPerSecond} must be 0 (unlimited) or positive");
        }
        if (options.RebuildConcurrency is < 1 or > ChunkServerOptions.MaxRebuildConcurrency)
        {
            throw new ArgumentException($"rebuild concurrency {options.RebuildConcurrency} must be from 1 to {ChunkServerOptions.MaxRebuildConcurrency}");
        }
        foreach (var master in options.MasterAddresses)
        {
            if (!Uri.TryCreate(master, UriKind.Absolute, out _))
            {
                throw new ArgumentException($"master address '{master}' is not a URL (e.g. http://127.0.0.1:7000)");
            }
        }
        var log = loggers.CreateLogger<ChunkServerHost>();
        var dataLock = DataDirLock.Acquire(options.DataDirs);
        ChunkStore? store = null;
        PeerChannels? peers = null;
        WebApplication? app = null;
        GrpcChannel? masterChannel = null;
        try
        {
            var id = ServerIdentity.LoadOrCreate(options.DataDirs[0]);
            store = ChunkStore.Open(new ChunkStoreOptions
            {
                DataDirs = options.DataDirs,
                ChunkSize = options.ChunkSize,
                BlockSize = options.BlockSize,
                DiskReserveBytes = options.DiskReserveBytes,
                AppendGapTimeout = options.AppendGapTimeout,
            }, loggers);
            var storeRef = store;
            long Capacity() => options.CapacityBytes ?? storeRef.FilesystemBytes;
            var metrics = new ChunkServerMetrics(store, Capacity);
            peers = new PeerChannels(options.Tls);
            var rebuild = new RebuildBudget(options.RebuildBandwidthBytesPerSecond, options.RebuildConcurrency, new RebuildMetrics(metrics.Registry));

            var listeners = new GrpcAndHttpListeners();
            var builder = ServerHostBuilder.CreateSlim();
            builder.Logging.ClearProviders();
            builder.Services.AddSingleton(loggers);
            builder.Services.AddSingleton<IHostLifetime, NoSignalLifetime>();
            builder.Services.AddSingleton(store);
            builder.Services.AddSingleton(metrics);
            builder.Services.AddSingleton(peers);
            builder.Services.AddSingleton(rebuild);
            builder.Services.AddSingleton<PeerChunkCopier>();
            builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>, LargeBlockMemoryPool.Factory>();
            // Read into a block at once instead of peeking for data first: one receive call per block, not two.
            builder.WebHost.UseSockets(sockets => sockets.WaitForDataBeforeAllocatingBuffer = false);
            var refusals = options.Tls is null ? null : new Core.Security.RpcRefusals(metrics.Registry, "chunkserver");
            if (options.Tls is { } tls)
            {
                builder.Services.AddSingleton(tls);
                builder.Services.AddSingleton(Core.Security.RpcRoleTable.Default);
                builder.Services.AddSingleton(refusals!);
            }
            var framedAppends = options.FramedAppends
                ? new FramedAppendEndpoint(store, metrics, rebuild, MaxMessageBytes, options.Tls, Core.Security.RpcRoleTable.Default, refusals,
                    loggers.CreateLogger<FramedAppendEndpoint>())
                : null;
            builder.Services.AddGrpc(grpc =>
            {
                grpc.MaxReceiveMessageSize = MaxMessageBytes;
                grpc.MaxSendMessageSize = MaxMessageBytes;
                if (options.Tls is not null)
                {
                    // First: nothing else runs for a refused caller.
                    grpc.Interceptors.Add<Core.Security.RpcAuthorizationInterceptor>();
                }
                grpc.Interceptors.Add<ChunkServerInterceptor>();
            });
            builder.WebHost.ConfigureKestrel(kestrel =>
            {
                kestrel.AddServerHeader = false;
                kestrel.Limits.MaxRequestBodySize = MaxMessageBytes + (1 << 20);
                kestrel.Limits.Http2.InitialConnectionWindowSize = 16 << 20;
                kestrel.Limits.Http2.InitialStreamWindowSize = 8 << 20;
                listeners.Bind(kestrel, listenIp, options.GrpcPort, options.HttpPort, options.Tls, grpcConnections: framedAppends?.Middleware);
            });
            app = builder.Build();
            app.MapGrpcService<ChunkServerService>();
            app.MapMetrics("/metrics", metrics.Registry);

            ChunkServerHost? host = null;
            app.MapGet("/healthz", () => Results.Json(new
            {
                status = "ok",
                id,
                chunks = storeRef.Count,
                registered = host?.Reporter?.Registered ?? false,
            }));
            await app.StartAsync(ct).ConfigureAwait(false);

            var grpcAddress = listeners.GrpcAddress;
            var httpAddress = listeners.HttpAddress;
            masterChannel = options.MasterAddresses.Count > 0 ? FeitianK8s.Core.Common.GrpcChannels.Create(options.MasterAddresses[0], tls: options.Tls) : null;
            host = new ChunkServerHost(id, app, store, dataLock, peers, masterChannel, grpcAddress, httpAddress, log) { Rebuild = rebuild };
            var hostRef = host;
            SelfHealingMetrics.Attach(metrics.Registry, () => hostRef.Scrubber, rebuild.Adaptive, store);
            new FeitianK8s.Core.Cluster.ServerEndpoints(id, grpcAddress, httpAddress).Write(options.DataDirs[0]);
            Scrub.Scrubber? scrubber = null;
            if (options.ScrubBandwidthBytesPerSecond > 0)
            {
                var masterForReports = masterChannel is null ? null : new MasterClient(masterChannel);
                scrubber = new Scrub.Scrubber(store, options.ScrubBandwidthBytesPerSecond, Path.Combine(options.DataDirs[0], Scrub.ScrubState.FileName),
                    async (chunkId, reason) =>
                    {
                        if (masterForReports is not null)
                        {
                            await masterForReports.ReportBadReplicaAsync(new Proto.Master.ReportBadReplicaRequest { ChunkId = chunkId, ChunkServerId = id, Reason = reason },
                                deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync.ConfigureAwait(false);
                        }
                    },
                    () => rebuild.Adaptive.Share, TimeProvider.System, loggers.CreateLogger<Scrub.Scrubber>());
                host.Scrubber = scrubber;
                var stoppingScrub = host._stopping.Token;
                host._scrubbing = Task.Run(() => scrubber.RunAsync(stoppingScrub), CancellationToken.None);
            }
            if (masterChannel is not null)
            {
                var advertised = options.AdvertiseAddress ?? (listenIp.Equals(IPAddress.Any) || listenIp.Equals(IPAddress.IPv6Any)
                    ? $"{(options.Tls is null ? "http" : "https")}://{Dns.GetHostName()}:{listeners.GrpcPort}"
                    : grpcAddress);
                var reporter = new MasterReporter(new MasterClient(masterChannel), new ChunkServerIdentityInfo(id, options.Node, options.Rack, advertised),
                    store, Capacity, metrics, options.HeartbeatInterval, options.MaxRegisterBackoff, loggers.CreateLogger<MasterReporter>(),
                    LeaderClients(peers), options.MasterAddresses)
                {
                    RebuildShare = rebuild.Adaptive,
                    Scrub = () => scrubber?.State is { } s
                        ? new Proto.Master.ScrubProgress
                        {
                            LastCompletedUnixMs = s.LastCompletedUnixMs,
                            BytesVerified = s.BytesVerified,
                            BadFound = s.BadFound,
                            PassStartedUnixMs = s.PassStartedUnixMs,
                        }
                        : null,
                };
                host.Reporter = reporter;
                var stopping = host._stopping.Token;
                host._reporting = Task.Run(() => reporter.RunAsync(stopping), CancellationToken.None);
            }
            log.LogInformation("Chunk server {Id} (node {Node}, rack {Rack}) serving gRPC on {Grpc} and HTTP on {Http}; {Chunks} chunks in {Dirs}",
                id, options.Node, options.Rack, grpcAddress, httpAddress, store.Count, string.Join(",", options.DataDirs));
            log.LogInformation("Re-replication budget of {Id}: {BandwidthBytesPerSecond} bytes/s (0 = unlimited), {Concurrency} copies at once",
                id, rebuild.BandwidthBytesPerSecond, rebuild.Concurrency);
            return host;
        }
        catch
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
            masterChannel?.Dispose();
            peers?.Dispose();
            store?.Dispose();
            dataLock.Dispose();
            throw;
        }
    }

    /// <summary>Clients of a leader a follower named, over the cached channels (reconnecting like every other).</summary>
    private static Func<string, MasterClient> LeaderClients(PeerChannels channels) => leader => new MasterClient(channels.For(leader));

    /// <summary>Stops serving, stops reporting, closes every chunk. Safe to call more than once.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await _reporting.ConfigureAwait(false);
        }
        catch (Exception error)
        {
            _log.LogError(error, "Master reporter of {Id} ended with an error", Id);
        }
        try
        {
            await _scrubbing.ConfigureAwait(false);
        }
        catch (Exception error)
        {
            _log.LogError(error, "Scrubber of {Id} ended with an error", Id);
        }
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            await _app.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        await _app.DisposeAsync().ConfigureAwait(false);
        _masterChannel?.Dispose();
        _peers.Dispose();
        _store.Dispose();
        _lock.Dispose();
        _stopping.Dispose();
        _log.LogInformation("Chunk server {Id} stopped", Id);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    /// <summary>The library never takes over the process's signals; Program.cs decides what SIGTERM means.</summary>
    private sealed class NoSignalLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
