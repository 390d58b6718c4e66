using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Nbd;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Microsoft.Extensions.Logging;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class UpSettings : CommandSettings
{
    [CommandOption("--data <DIR>")]
    [Description("Data directory; each server gets its own directory below it.")]
    public string DataDir { get; init; } = ClusterSettings.DefaultDataDir;

    [CommandOption("--chunkservers <N>")]
    public int ChunkServers { get; init; } = 6;

    [CommandOption("--racks <N>")]
    public int Racks { get; init; } = 3;

    [CommandOption("--chunk-size <SIZE>")]
    [Description("Chunk size, e.g. 64MiB.")]
    public string ChunkSize { get; init; } = "64MiB";

    [CommandOption("--nbd-port <PORT>")]
    [Description("TCP port on 127.0.0.1 serving every volume over NBD.")]
    public int NbdPort { get; init; } = 10809;

    [CommandOption("--master-port <PORT>")]
    [Description("gRPC port of the first master (default: the port of the last run on DIR, else one the OS picks).")]
    public int? MasterPort { get; init; }

    [CommandOption("--metrics-port <PORT>")]
    [Description("TCP port on 127.0.0.1 serving /metrics of the volumes and the NBD server in this process (default: one the OS picks).")]
    public int MetricsPort { get; init; }

    [CommandOption("--console-port <PORT>")]
    [Description("TCP port on 127.0.0.1 of the web console's token-protected proxy (as `feitian console`; default: one the OS picks). Not used with --insecure.")]
    public int ConsolePort { get; init; }

    [CommandOption("--masters <N>")]
    [Description("Masters in the Raft group: 1, 3 or 5. Ports are kept across restarts on DIR.")]
    public int Masters { get; init; } = 3;

    [CommandOption("--segment-size <SIZE>")]
    [Description("RAF log segment size of every volume, e.g. 256MiB; GC only rewrites sealed segments.")]
    public string SegmentSize { get; init; } = "256MiB";

    [CommandOption("--gc-interval <SECONDS>")]
    [Description("Seconds between background GC passes of every open volume (0 disables GC).")]
    public double GcIntervalSeconds { get; init; } = 30;

    [CommandOption("--rebuild-bandwidth <BYTES_PER_SECOND>")]
    [Description("Re-replication bandwidth of each chunk server, e.g. 100Mi or 50M (Kubernetes quantity); 0 or absent = unlimited.")]
    public string? RebuildBandwidth { get; init; }

    [CommandOption("--rebuild-concurrency <N>")]
    [Description("Re-replication copies each chunk server runs at once; absent = the chunk server's default (2).")]
    public int? RebuildConcurrency { get; init; }

    [CommandOption("--scrub-bandwidth <BYTES_PER_SECOND>")]
    [Description("Background scrub rate of each chunk server, e.g. 4Mi (Kubernetes quantity); 0 = off; absent = the chunk server's default (4Mi).")]
    public string? ScrubBandwidth { get; init; }

    [CommandOption("--dead-after <SECONDS>")]
    [Description("Seconds without a heartbeat before the master declares a chunk server dead and rebuilds its replicas (default 60).")]
    public double? DeadAfterSeconds { get; init; }

    [CommandOption("--max-rebuilds <N>")]
    [Description("Re-replication copies the master runs at once, cluster-wide (default 12).")]
    public int? MaxRebuilds { get; init; }

    [CommandOption("--backup-target <URL>")]
    [Description("Backup target the web console lists: s3://BUCKET[[/PREFIX]] (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).")]
    public string? BackupTarget { get; init; }

    [CommandOption("--backup-endpoint <URL>")]
    [Description("S3-compatible endpoint of --backup-target, e.g. http://127.0.0.1:9000.")]
    public string? BackupEndpoint { get; init; }

    [CommandOption("--backup-region <R>")]
    [Description("Region to sign the console's backup listing for (default us-east-1).")]
    public string? BackupRegion { get; init; }

    /// <summary>The self-healing and console backup flags handed to the master, only those given.</summary>
    public IReadOnlyList<string> MasterArgs()
    {
        var args = new List<string>();
        if (BackupTarget is not null)
        {
            args.AddRange(["--backup-target", BackupTarget, "--backup-endpoint", BackupEndpoint ?? ""]);
        }
        if (BackupRegion is not null)
        {
            args.AddRange(["--backup-region", BackupRegion]);
        }
        if (DeadAfterSeconds is { } deadAfter)
        {
            args.AddRange(["--dead-after", deadAfter.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        if (MaxRebuilds is { } max)
        {
            args.AddRange(["--max-rebuilds", max.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        return args;
    }

    /// <summary>The re-replication and scrub flags handed to every chunk server, only those given.</summary>
    public IReadOnlyList<string> ChunkServerRebuildArgs()
    {
        var args = new List<string>();
        if (RebuildBandwidth is { } bandwidth)
        {
            args.AddRange(["--rebuild-bandwidth", bandwidth]);
        }
        if (RebuildConcurrency is { } concurrency)
        {
            args.AddRange(["--rebuild-concurrency", concurrency.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        }
        if (ScrubBandwidth is { } scrub)
        {
            args.AddRange(["--scrub-bandwidth", scrub]);
        }
        return args;
    }

    [CommandOption("--master-wait <SECONDS>")]
    [Description("How long a volume's writes wait for a master (restart, election, network) before they fail with EIO.")]
    public double MasterWaitSeconds { get; init; } = 60;

    [CommandOption("--no-restart")]
    [Description("Do not restart a master or chunk server that dies (by default `up` restarts it on its same ports, with backoff).")]
    public bool NoRestart { get; init; }

    [CommandOption("--insecure")]
    [Description("No TLS: servers and clients talk plain HTTP/2 and accept any caller. By default `up` makes a CA and per-role certificates under DIR/tls and every component uses mutual TLS.")]
    public bool Insecure { get; init; }

    [CommandOption("-v|--verbose")]
    [Description("Log the servers' information messages, not only warnings.")]
    public bool Verbose { get; init; }

    public override Spectre.Console.ValidationResult Validate()
    {
        if (ChunkServers < 1 || Racks < 1)
        {
            return Spectre.Console.ValidationResult.Error("--chunkservers and --racks must be at least 1");
        }
        if (Masters is not (1 or 3 or 5))
        {
            return Spectre.Console.ValidationResult.Error("--masters must be 1, 3 or 5");
        }
        if (NbdPort is < 0 or > 65535)
        {
            return Spectre.Console.ValidationResult.Error("--nbd-port must be a TCP port (0 lets the OS choose)");
        }
        if (MetricsPort is < 0 or > 65535)
        {
            return Spectre.Console.ValidationResult.Error("--metrics-port must be a TCP port (0 lets the OS choose)");
        }
        if (ConsolePort is < 0 or > 65535)
        {
            return Spectre.Console.ValidationResult.Error("--console-port must be a TCP port (0 lets the OS choose)");
        }
        if ((BackupTarget is null) != (BackupEndpoint is null) || (BackupRegion is not null && BackupTarget is null))
        {
            return Spectre.Console.ValidationResult.Error("--backup-target s3://BUCKET[/PREFIX] and --backup-endpoint URL go together (--backup-region is optional)");
        }
        if (BackupTarget is not null)
        {
            try
            {
                FeitianK8s.Core.Backup.BackupTarget.Parse(BackupTarget);
            }
            catch (FeitianK8s.Core.Backup.BackupException e)
            {
                return Spectre.Console.ValidationResult.Error($"--backup-target: {e.Message}");
            }
            if (!Uri.TryCreate(BackupEndpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
            {
                return Spectre.Console.ValidationResult.Error($"--backup-endpoint '{BackupEndpoint}' is not an http(s) URL, e.g. http://127.0.0.1:9000");
            }
        }
        if (!(MasterWaitSeconds > 0) || MasterWaitSeconds > 86_400)
        {
            return Spectre.Console.ValidationResult.Error("--master-wait must be a positive number of seconds (at most a day)");
        }
        if (GcIntervalSeconds < 0 || double.IsNaN(GcIntervalSeconds))
        {
            return Spectre.Console.ValidationResult.Error("--gc-interval must be 0 (off) or a positive number of seconds");
        }
        if (RebuildBandwidth is not null && !ByteSize.TryParseQuantity(RebuildBandwidth, out _))
        {
            return Spectre.Console.ValidationResult.Error($"--rebuild-bandwidth '{RebuildBandwidth}' is not bytes per second (examples: 104857600, 100Mi, 1Gi, 500M; 0 = unlimited)");
        }
        if (RebuildConcurrency is < 1 or > FeitianK8s.ChunkServer.ChunkServerOptions.MaxRebuildConcurrency)
        {
            return Spectre.Console.ValidationResult.Error($"--rebuild-concurrency must be from 1 to {FeitianK8s.ChunkServer.ChunkServerOptions.MaxRebuildConcurrency}");
        }
        if (ScrubBandwidth is not null && !ByteSize.TryParseQuantity(ScrubBandwidth, out _))
        {
            return Spectre.Console.ValidationResult.Error($"--scrub-bandwidth '{ScrubBandwidth}' is not bytes per second (examples: 4Mi, 10M; 0 = off)");
        }
        if (DeadAfterSeconds is { } deadAfter && !(deadAfter > 0))
        {
            return Spectre.Console.ValidationResult.Error("--dead-after must be a positive number of seconds");
        }
        if (MaxRebuilds is < 1 or > 10_000)
        {
            return Spectre.Console.ValidationResult.Error("--max-rebuilds must be from 1 to 10000");
        }
        if (!ByteSize.TryParse(SegmentSize, out var segment) || segment < 1 << 20)
        {
            return Spectre.Console.ValidationResult.Error($"--segment-size '{SegmentSize}' is not a size of at least 1MiB");
        }
        return ByteSize.TryParse(ChunkSize, out var size) && size >= 64 << 10
            ? Spectre.Console.ValidationResult.Success()
            : Spectre.Console.ValidationResult.Error($"--chunk-size '{ChunkSize}' is not a size of at least 64KiB");
    }
}

/// <summary>
/// `feitian up`: master and chunk servers as child processes (restarted on their same ports when
/// they die, see <see cref="ChildSupervisor"/>), plus an NBD server in this process exporting
/// every volume, until SIGINT or SIGTERM.
/// </summary>
public sealed class UpCommand : AsyncCommand<UpSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, UpSettings settings, CancellationToken cancellationToken)
    {
        using var loggers = LoggerFactory.Create(builder => builder
            .AddSimpleConsole(options => { options.SingleLine = true; options.TimestampFormat = "HH:mm:ss "; })
            .SetMinimumLevel(settings.Verbose ? LogLevel.Information : LogLevel.Warning));
        var dataDir = Path.GetFullPath(settings.DataDir);
        Directory.CreateDirectory(dataDir);

        await using var cluster = await WorkProgress.RunAsync($"up: starting {settings.Masters} master(s) and {settings.ChunkServers} chunk server(s)", () => LocalClusterLauncher.StartAsync(new LocalClusterOptions
        {
            DataDir = dataDir,
            ChunkServers = settings.ChunkServers,
            Racks = settings.Racks,
            ChunkSize = ByteSize.Parse(settings.ChunkSize),
            MasterPort = settings.MasterPort ?? PreviousMasterPort(dataDir),
            Masters = settings.Masters,
            PreviousMasters = PreviousMasters(dataDir),
            ChunkServerPorts = PreviousChunkServerPorts(dataDir),
            ExtraChunkServerArgs = settings.ChunkServerRebuildArgs(),
            ExtraMasterArgs = settings.MasterArgs(),
            Insecure = settings.Insecure,
        }, loggers, cancellationToken));
        await WorkProgress.RunAsync($"up: waiting for {settings.ChunkServers} chunk server(s) to report", () => cluster.WaitForChunkServersAliveAsync(ct: cancellationToken));
        await using var supervisor = new ChildSupervisor(loggers.CreateLogger<ChildSupervisor>());
        if (!settings.NoRestart)
        {
            cluster.SuperviseWith(supervisor);
        }

        const string clientNode = "node-1";
        using var fs = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = cluster.MasterAddresses,
            ClientNode = clientNode,
            MasterUnavailableRetry = TimeSpan.FromSeconds(settings.MasterWaitSeconds),
            // Replicas on this node are read from their files (checksums verified, chunk server as fallback).
            LocalChunkServerDataDirs = cluster.ChunkServers.Where(s => s.Node == clientNode).ToDictionary(s => s.GrpcAddress, s => s.DataDir),
            Tls = cluster.ClientTls(),
        }, loggers);
        var catalog = new MasterVolumeCatalog(fs.Master);
        var holder = $"feitian-up@{Environment.MachineName}";
        await using var volumes = new RafVolumeProvider(fs, catalog, new RafOptions
        {
            Holder = holder,
            SegmentSizeBytes = ByteSize.Parse(settings.SegmentSize),
            GcInterval = settings.GcIntervalSeconds > 0 ? TimeSpan.FromSeconds(settings.GcIntervalSeconds) : null,
        }, loggers);
        await using var nbd = new NbdServer(volumes, new NbdServerOptions
        {
            TcpPort = settings.NbdPort,
            UnixSocketPath = Path.Combine(dataDir, "nbd.sock"),
        }, loggers.CreateLogger<NbdServer>());
        await nbd.StartAsync(cancellationToken);
        await using var processMetrics = await ProcessMetricsServer.StartAsync(settings.MetricsPort, cancellationToken);
        // With TLS the masters serve the console only to client certificates: a browser reaches it through this
        // process's admin certificate and a token (as `feitian console`). Without TLS any master serves it as it is.
        await using var consoleProxy = cluster.ClientTls() is { } adminTls
            ? await ConsoleProxy.StartAsync(cluster.MasterAddresses, adminTls, settings.ConsolePort, loggers, cancellationToken)
            : null;
        var nbdBase = $"nbd://127.0.0.1:{nbd.TcpEndPoint!.Port}";

        foreach (var master in cluster.Masters)
        {
            Console.Out.WriteLine($"master        {master.GrpcAddress}  (metrics {master.HttpAddress}/metrics)");
        }
        foreach (var server in cluster.ChunkServers)
        {
            Console.Out.WriteLine($"chunk server  {server.GrpcAddress}  node={server.Node} rack={server.Rack}  (metrics {server.HttpAddress}/metrics)");
        }
        // Any master serves the console: with TLS a follower answers with the leader's data, without TLS it redirects.
        Console.Out.WriteLine($"console: {consoleProxy?.Url ?? cluster.Masters[0].HttpAddress + "/"}");
        Console.Out.WriteLine($"nbd           {nbdBase}/VOLUME  and  nbd+unix:///VOLUME?socket={nbd.UnixSocketPath}");
        Console.Out.WriteLine($"metrics       {processMetrics.Address}/metrics  (volumes and NBD of this process)");
        Console.Out.WriteLine($"data          {dataDir}");
        Console.Out.WriteLine(cluster.TlsDirectory is { } tls
            ? $"tls           mutual TLS; CA and certificates in {tls} (the CLI finds them with --data)"
            : "tls           off (--insecure): any caller reaching a port is accepted");
        Console.Out.WriteLine("ready; Ctrl+C stops the cluster");

        try
        {
            await AnnounceVolumesAsync(catalog, nbdBase, loggers.CreateLogger<UpCommand>(), cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        Console.Out.WriteLine("stopping");
        await nbd.StopAsync(CancellationToken.None);
        await volumes.DisposeAsync();
        await supervisor.StopAsync();
        await ReleaseLeasesAsync(fs.Master, holder, loggers.CreateLogger<UpCommand>());
        await cluster.StopAsync();
        return 0;
    }

    /// <summary>Prints the NBD URI of every volume, including those created while the cluster runs.</summary>
    private static async Task AnnounceVolumesAsync(MasterVolumeCatalog catalog, string nbdBase, ILogger logger, CancellationToken ct)
    {
        var announced = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            try
            {
                var names = await catalog.ListAsync(ct);
                foreach (var name in names.Where(announced.Add))
                {
                    Console.Out.WriteLine($"volume        {nbdBase}/{name}");
                }
                announced.IntersectWith(names);
            }
            catch (PanguException e)
            {
                logger.LogWarning(e, "Listing volumes failed; retrying");
            }
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
        }
    }

    /// <summary>The masters' gRPC and Raft endpoints of the last run on DIR (kept so the Raft group and clients keep their addresses).</summary>
    private static IReadOnlyList<ClusterFileMaster> PreviousMasters(string dataDir)
    {
        try
        {
            return ClusterFile.Read(dataDir).MasterPeers ?? [];
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidOperationException)
        {
            return [];
        }
    }

    /// <summary>gRPC ports of the chunk servers of the last run on DIR (node-i → i), so they come back where the master recorded them.</summary>
    private static Dictionary<int, int> PreviousChunkServerPorts(string dataDir)
    {
        var ports = new Dictionary<int, int>();
        try
        {
            foreach (var server in ClusterFile.Read(dataDir).ChunkServers)
            {
                if (server.Node.StartsWith("node-", StringComparison.Ordinal)
                    && int.TryParse(server.Node["node-".Length..], System.Globalization.CultureInfo.InvariantCulture, out var index))
                {
                    ports[index] = new Uri(server.Grpc).Port;
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or UriFormatException or InvalidOperationException)
        {
        }
        return ports;
    }

    /// <summary>
    /// Gives back the leases this process's engines held: a volume nobody holds can be snapshotted
    /// by the CLI directly, while a held one waits for its holder's engine to answer.
    /// </summary>
    private static async Task ReleaseLeasesAsync(MasterConnection master, string holder, ILogger logger)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var list = await master.CallAsync("list volumes", (c, o) => c.ListVolumesAsync(new FeitianK8s.Proto.Master.ListVolumesRequest(), o).ResponseAsync, timeout.Token);
            foreach (var volume in list.Volumes.Where(v => v.LeaseHolder == holder))
            {
                await master.CallAsync("release lease", (c, o) => c.AcquireVolumeLeaseAsync(
                    new FeitianK8s.Proto.Master.AcquireVolumeLeaseRequest { Name = volume.Name, Holder = "" }, o).ResponseAsync, timeout.Token);
            }
        }
        catch (Exception e) when (e is Grpc.Core.RpcException or OperationCanceledException or PanguException)
        {
            logger.LogWarning("Releasing the volume leases of {Holder} failed: {Error}", holder, e.Message);
        }
    }

    private static int PreviousMasterPort(string dataDir)
    {
        try
        {
            var previous = ClusterFile.Read(dataDir);
            return previous.Masters.Count > 0 ? new Uri(previous.Masters[0]).Port : 0;
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or UriFormatException or InvalidOperationException)
        {
            return 0;
        }
    }
}
