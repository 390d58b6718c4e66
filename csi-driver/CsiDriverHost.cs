using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;
using FeitianK8s.Csi.Controller;
using FeitianK8s.Csi.Identity;
using FeitianK8s.Csi.Node;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi;

/// <summary>
/// The CSI driver as a library: gRPC (HTTP/2) on a unix socket serving Identity, and
/// Controller and/or Node by mode. On start the node plugin recovers its staged volumes
/// and registers its node id with the master. With --metrics-port, /metrics on HTTP/1 (the node
/// plugin's includes every staged volume's series, see <see cref="NodeMetricsExposition"/>).
/// Stopping leaves staged volumes running (their hosts are separate processes).
/// </summary>
public sealed class CsiDriverHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private CsiDriverHost(WebApplication app, CsiDriverOptions options)
    {
        _app = app;
        Options = options;
    }

    public CsiDriverOptions Options { get; }

    public static CsiDriverHost Create(CsiDriverOptions options, Action<ILoggingBuilder>? logging = null)
    {
        var builder = ServerHostBuilder.CreateSlim();
        HostLogging.Configure(builder.Logging, logging);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ListenUnixSocket(options.SocketPath, l => l.Protocols = HttpProtocols.Http2);
            if (options.MetricsPort is { } metricsPort)
            {
                k.ListenAnyIP(metricsPort, l => l.Protocols = HttpProtocols.Http1);
            }
        });
        builder.Services.AddGrpc(o => o.Interceptors.Add<CallLoggingInterceptor>());
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(sp => new PanguClient(new PanguClientOptions
        {
            MasterAddresses = options.Masters,
            ClientNode = options.NodeId,
            MasterUnavailableRetry = options.MasterUnavailableRetry,
            Tls = options.Tls,
        }, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddSingleton(sp => sp.GetRequiredService<PanguClient>().Master);
        builder.Services.AddSingleton<VolumeLocks>();
        builder.Services.AddSingleton<ProcessRunner>();
        builder.Services.AddSingleton<VolumeManager>();
        builder.Services.AddSingleton(sp => new VolumeSnapshots(sp.GetRequiredService<PanguClient>(), sp.GetRequiredService<PanguClient>().Master,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<VolumeSnapshots>())
        {
            Holder = $"csi-controller@{(options.NodeId.Length > 0 ? options.NodeId : Environment.MachineName)}",
        });
        builder.Services.AddSingleton<ISnapshotBackups, S3SnapshotBackups>();
        builder.Services.AddSingleton<SnapshotManager>();
        builder.Services.AddSingleton<CloneManager>();
        builder.Services.AddSingleton<Mounter>();
        builder.Services.AddSingleton<LoopDevices>();
        builder.Services.AddSingleton<KernelNbd>();
        builder.Services.AddSingleton(_ => new NodeStateStore(options.StateDir));
        builder.Services.AddSingleton<IVolumeHostLauncher>(_ => options.VolumeHostAgentSocket is { } agent
            ? new AgentVolumeHostLauncher(agent)
            : new LocalVolumeHostLauncher(options));
        builder.Services.AddSingleton<NodeStager>();
        builder.Services.AddSingleton<NodeRegistration>();
        builder.Services.AddSingleton<NodeLeaseRenewer>();
        builder.Services.AddSingleton<PluginHealth>();
        builder.Services.AddSingleton<NodeMetricsExposition>();
        var app = builder.Build();
        if (options.MetricsPort is not null)
        {
            // Only on the HTTP/1 port: the CSI socket speaks gRPC.
            app.MapGet("/metrics", async (HttpContext http, NodeMetricsExposition metrics) =>
                Results.Text(await metrics.BuildAsync(http.RequestAborted), "text/plain; version=0.0.4; charset=utf-8"))
                .AddEndpointFilter(async (context, next) => context.HttpContext.Connection.LocalPort > 0
                    ? await next(context)
                    : Results.NotFound());
        }
        app.MapGrpcService<IdentityService>();
        if (options.RunsController)
        {
            app.MapGrpcService<ControllerService>();
        }
        if (options.RunsNode)
        {
            app.MapGrpcService<NodeService>();
        }
        return new CsiDriverHost(app, options);
    }

    public IServiceProvider Services => _app.Services;

    /// <summary>http://HOST:PORT of /metrics once started (the port the OS picked for --metrics-port 0); null without one.</summary>
    public string? MetricsAddress => Options.MetricsPort is null
        ? null
        : _app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features
            .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses
            .Where(a => a.StartsWith("http://", StringComparison.Ordinal) && !a.StartsWith("http://unix:", StringComparison.Ordinal))
            .Select(a => a.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal))
            .FirstOrDefault();

    public async Task StartAsync(CancellationToken ct = default)
    {
        var dir = Path.GetDirectoryName(Options.SocketPath);
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }
        if (File.Exists(Options.SocketPath))
        {
            // A socket left by a previous run; nobody serves on it any more.
            File.Delete(Options.SocketPath);
        }
        if (Options.RunsNode)
        {
            await _app.Services.GetRequiredService<NodeStager>().RecoverAsync(ct);
            await _app.Services.GetRequiredService<NodeRegistration>().StartAsync(ct);
            _app.Services.GetRequiredService<NodeLeaseRenewer>().Start();
        }
        LogSnapshotTarget(_app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<CsiDriverHost>());
        await _app.StartAsync(ct);
    }

    /// <summary>Says which snapshot target the driver was given (backups go there), never its credentials.</summary>
    private void LogSnapshotTarget(ILogger log)
    {
        if (Options.SnapshotTarget is not { } target)
        {
            log.LogInformation("No snapshot target configured");
            return;
        }
        log.LogInformation("Snapshot target {Endpoint} bucket {Bucket} region {Region}; credentials {Credentials}",
            target.Endpoint, target.Bucket, target.Region ?? "(none)", target.HasCredentials ? "present" : "absent");
        if (!target.HasCredentials)
        {
            log.LogWarning("Snapshot target {Endpoint} has no credentials ({AccessKeyEnv} and {SecretKeyEnv} unset): backups to it will fail",
                target.Endpoint, SnapshotTarget.AccessKeyIdEnv, SnapshotTarget.SecretAccessKeyEnv);
        }
    }

    public Task StopAsync(CancellationToken ct = default) => _app.StopAsync(ct);

    public Task WaitForShutdownAsync(CancellationToken ct = default) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        if (File.Exists(Options.SocketPath))
        {
            File.Delete(Options.SocketPath);
        }
    }
}
