using FeitianK8s.Core.Common;
using FeitianK8s.Operator.Failover;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Kube;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Volumes;
using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Operator;

/// <summary>
/// The operator process: /metrics and /healthz over HTTP, Lease-based leader election, and the
/// StorageCluster and Volume controllers running only while this replica leads.
/// </summary>
public sealed class OperatorHost : IAsyncDisposable
{
    private readonly OperatorOptions _options;
    private readonly KubernetesClientConfiguration _config;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly Kubernetes _client;
    private readonly CancellationTokenSource _stop = new();
    private WebApplication? _web;
    private Task? _run;
    private readonly bool _ownTlsDirectory;

    public OperatorHost(OperatorOptions options, KubernetesClientConfiguration config, ILoggerFactory loggerFactory, IMasterStatusSource? masters = null,
        ReconcilerOptions? reconcilerOptions = null, ControllerOptions? controllerOptions = null,
        VolumeSyncOptions? volumeOptions = null, IMasterVolumes? masterVolumes = null,
        NodeFailoverOptions? failoverOptions = null, INodeLeaseSource? nodeLeases = null)
    {
        _options = options;
        _config = config;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<OperatorHost>();
        _client = new Kubernetes(config);
        var api = new KubeApi(_client, loggerFactory.CreateLogger<KubeApi>());
        Events = new EventRecorder(_client, "feitian-operator", loggerFactory.CreateLogger<EventRecorder>());
        var fixedTls = options.TlsFiles is { } tlsFiles
            ? FeitianK8s.Core.Security.ComponentTls.FromFlags(tlsFiles.CaFile, tlsFiles.CertFile, tlsFiles.KeyFile, FeitianK8s.Core.Security.ComponentRoles.Operator)!
                .WithLogger(loggerFactory.CreateLogger("FeitianK8s.Operator.Tls"))
            : null;
        // In-cluster the operator reads its own certificate of each cluster from the Secret it issued (or
        // cert-manager did); --tls-* files, when given, stand for every cluster instead.
        _ownTlsDirectory = options.TlsDirectory is null;
        Certificates = new Tls.OperatorCertificates(options.TlsDirectory ?? Tls.OperatorCertificates.FreshDirectory(), loggerFactory.CreateLogger<Tls.OperatorCertificates>());
        Func<Resources.StorageCluster, FeitianK8s.Core.Security.ComponentTls?> tlsOf = c => c.Spec.Tls.Enabled ? fixedTls ?? Certificates.For(c) : null;
        Masters = masters ?? (options.MasterAddress is { } address
            ? new GrpcMasterStatusSource(_ => address, loggerFactory.CreateLogger<GrpcMasterStatusSource>()) { TlsOf = tlsOf }
            : new GrpcMasterStatusSource(loggerFactory.CreateLogger<GrpcMasterStatusSource>()) { TlsOf = tlsOf });
        Reconciler = new StorageClusterReconciler(api, Events, Masters, reconcilerOptions ?? new ReconcilerOptions
        {
            CsiClusterRolePrefix = options.CsiClusterRolePrefix,
            CsiLeaseNamespace = options.LeaseNamespace,
            Operator = new Desired.OperatorPeer(options.LeaseNamespace, Desired.OperatorPeer.ChartPodLabels),
        },
            loggerFactory.CreateLogger<StorageClusterReconciler>(), Certificates);
        Controller = new StorageClusterController(_client, Reconciler, Events, controllerOptions ?? new ControllerOptions
        {
            Namespace = options.Namespace,
            Workers = options.Workers,
        }, loggerFactory);
        MasterVolumes = masterVolumes ?? (options.MasterAddress is { } volumesAddress
            ? new GrpcMasterVolumes(_ => volumesAddress, loggerFactory.CreateLogger<GrpcMasterVolumes>()) { TlsOf = tlsOf }
            : new GrpcMasterVolumes(loggerFactory.CreateLogger<GrpcMasterVolumes>()) { TlsOf = tlsOf });
        volumeOptions ??= new VolumeSyncOptions { Namespace = options.Namespace, ResyncPeriod = options.VolumeResyncPeriod };
        VolumeSync = new VolumeSyncReconciler(api, Events, MasterVolumes, volumeOptions, loggerFactory.CreateLogger<VolumeSyncReconciler>());
        Volumes = new VolumeController(_client, VolumeSync, Events, volumeOptions, loggerFactory);
        NodeLeases = nodeLeases ?? (options.MasterAddress is { } leasesAddress
            ? new GrpcNodeLeaseSource(_ => leasesAddress, loggerFactory.CreateLogger<GrpcNodeLeaseSource>()) { TlsOf = tlsOf }
            : new GrpcNodeLeaseSource(loggerFactory.CreateLogger<GrpcNodeLeaseSource>()) { TlsOf = tlsOf });
        NodeFailover = options.NodeFailover
            ? new NodeFailoverController(_client, NodeLeases, Events, failoverOptions ?? new NodeFailoverOptions { Namespace = options.Namespace },
                loggerFactory.CreateLogger<NodeFailoverController>())
            : null;
    }

    /// <summary>The operator's own certificate per cluster, from the Secrets NAME-tls-operator.</summary>
    public Tls.OperatorCertificates Certificates { get; }
    public IMasterStatusSource Masters { get; }
    public EventRecorder Events { get; }
    public StorageClusterReconciler Reconciler { get; }
    public StorageClusterController Controller { get; }
    public IMasterVolumes MasterVolumes { get; }
    public VolumeSyncReconciler VolumeSync { get; }
    public VolumeController Volumes { get; }
    public INodeLeaseSource NodeLeases { get; }
    /// <summary>Null when --node-failover is false: the operator then never touches nodes.</summary>
    public NodeFailoverController? NodeFailover { get; }
    public bool IsLeader { get; private set; }
    public int HttpPort { get; private set; }

    /// <summary>Completes when the operator stops: cancelled, or leadership lost (then it faults, so the process exits non-zero).</summary>
    public Task Completion => _run ?? Task.CompletedTask;

    /// <summary>
    /// --kubeconfig FILE; else, inside a pod, the in-cluster config; else $KUBECONFIG (of a list
    /// like kubectl's, the first file that exists); else ~/.kube/config.
    /// </summary>
    public static KubernetesClientConfiguration LoadConfig(OperatorOptions options) => LoadConfig(options, Environment.GetEnvironmentVariable);

    public static KubernetesClientConfiguration LoadConfig(OperatorOptions options, Func<string, string?> environment)
    {
        if (options.Kubeconfig is { } path)
        {
            return KubernetesClientConfiguration.BuildConfigFromConfigFile(path);
        }
        if (KubernetesClientConfiguration.IsInCluster())
        {
            return KubernetesClientConfiguration.InClusterConfig();
        }
        var fromEnvironment = (environment("KUBECONFIG") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .FirstOrDefault(File.Exists);
        return fromEnvironment is not null
            ? KubernetesClientConfiguration.BuildConfigFromConfigFile(fromEnvironment)
            : KubernetesClientConfiguration.BuildConfigFromConfigFile();
    }

    public async Task StartAsync()
    {
        var builder = ServerHostBuilder.CreateSlim();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(_loggerFactory);
        builder.WebHost.UseUrls($"http://{_options.Listen}:{_options.HttpPort}");
        _web = builder.Build();
        _web.MapGet("/healthz", () => Results.Text("ok\n"));
        _web.MapGet("/readyz", () => Results.Text(IsLeader ? "leader\n" : "standby\n"));
        _web.MapMetrics("/metrics");
        await _web.StartAsync();
        HttpPort = new Uri(_web.Urls.First()).Port;
        _logger.LogInformation("Operator {Identity} serving /metrics and /healthz on port {Port}", _options.Identity, HttpPort);
        _run = RunAsync(_stop.Token);
    }

    private async Task RunAsync(CancellationToken ct)
    {
        if (!_options.LeaderElect)
        {
            IsLeader = true;
            await RunControllersAsync(ct);
            return;
        }
        var lease = new LeaseLock(_client, _options.LeaseNamespace, _options.LeaseName, _options.Identity);
        using var elector = new LeaderElector(new LeaderElectionConfig(lease)
        {
            LeaseDuration = TimeSpan.FromSeconds(15),
            RenewDeadline = TimeSpan.FromSeconds(10),
            RetryPeriod = TimeSpan.FromSeconds(2),
        });
        var leading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        elector.OnStartedLeading += () => leading.TrySetResult();
        elector.OnNewLeader += leader => _logger.LogInformation("Leader is now {Leader}", leader);
        elector.OnError += e => _logger.LogWarning(e, "Leader election error");
        var election = elector.RunUntilLeadershipLostAsync(ct);
        await Task.WhenAny(leading.Task, election);
        if (!leading.Task.IsCompleted)
        {
            await election;
            return;
        }
        IsLeader = true;
        _logger.LogInformation("{Identity} leads; starting the controller", _options.Identity);
        using var controllerStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var controller = RunControllersAsync(controllerStop.Token);
        await Task.WhenAny(election, controller);
        IsLeader = false;
        await controllerStop.CancelAsync();
        await controller;
        if (!ct.IsCancellationRequested)
        {
            // Another replica may already be reconciling: stop rather than race it.
            throw new InvalidOperationException($"{_options.Identity} lost the leadership lease {_options.LeaseNamespace}/{_options.LeaseName}");
        }
    }

    private Task RunControllersAsync(CancellationToken ct)
    {
        if (NodeFailover is null)
        {
            _logger.LogInformation("Node failover is off (--node-failover false): no node is ever marked out of service");
            return Task.WhenAll(Controller.RunAsync(ct), Volumes.RunAsync(ct));
        }
        return Task.WhenAll(Controller.RunAsync(ct), Volumes.RunAsync(ct), NodeFailover.RunAsync(ct));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_run is not null)
        {
            try
            {
                await _run;
            }
            catch (Exception e) when (e is OperationCanceledException or InvalidOperationException)
            {
            }
        }
        if (_web is not null)
        {
            await _web.StopAsync();
            await _web.DisposeAsync();
        }
        (Masters as IDisposable)?.Dispose();
        (MasterVolumes as IDisposable)?.Dispose();
        (NodeLeases as IDisposable)?.Dispose();
        _client.Dispose();
        _stop.Dispose();
        if (_ownTlsDirectory && System.IO.Directory.Exists(Certificates.Directory))
        {
            System.IO.Directory.Delete(Certificates.Directory, recursive: true);
        }
    }
}
