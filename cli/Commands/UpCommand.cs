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
    [Description("Master gRPC port (default: the port of the last run on DIR, else one the OS picks).")]
    public int? MasterPort { get; init; }

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

    /// <summary>The re-replication flags handed to every chunk server, only those given.</summary>
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
        return args;
    }

    [CommandOption("-v|--verbose")]
    [Description("Log the servers' information messages, not only warnings.")]
    public bool Verbose { get; init; }

    public override Spectre.Console.ValidationResult Validate()
    {
        if (ChunkServers < 1 || Racks < 1)
        {
            return Spectre.Console.ValidationResult.Error("--chunkservers and --racks must be at least 1");
        }
        if (NbdPort is < 0 or > 65535)
        {
            return Spectre.Console.ValidationResult.Error("--nbd-port must be a TCP port (0 lets the OS choose)");
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
/// `feitian up`: master and chunk servers as child processes, plus an NBD server in
/// this process exporting every volume, until SIGINT or SIGTERM.
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

        await using var cluster = await LocalClusterLauncher.StartAsync(new LocalClusterOptions
        {
            DataDir = dataDir,
            ChunkServers = settings.ChunkServers,
            Racks = settings.Racks,
            ChunkSize = ByteSize.Parse(settings.ChunkSize),
            MasterPort = settings.MasterPort ?? PreviousMasterPort(dataDir),
            ExtraChunkServerArgs = settings.ChunkServerRebuildArgs(),
        }, loggers, cancellationToken);
        await cluster.WaitForChunkServersAliveAsync(ct: cancellationToken);

        const string clientNode = "node-1";
        using var fs = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [cluster.MasterAddress],
            ClientNode = clientNode,
            // Replicas on this node are read from their files (checksums verified, chunk server as fallback).
            LocalChunkServerDataDirs = cluster.ChunkServers.Where(s => s.Node == clientNode).ToDictionary(s => s.GrpcAddress, s => s.DataDir),
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
        var nbdBase = $"nbd://127.0.0.1:{nbd.TcpEndPoint!.Port}";

        Console.Out.WriteLine($"master        {cluster.MasterAddress}  (metrics {cluster.Master.HttpAddress}/metrics)");
        foreach (var server in cluster.ChunkServers)
        {
            Console.Out.WriteLine($"chunk server  {server.GrpcAddress}  node={server.Node} rack={server.Rack}  (metrics {server.HttpAddress}/metrics)");
        }
        Console.Out.WriteLine($"nbd           {nbdBase}/VOLUME  and  nbd+unix:///VOLUME?socket={nbd.UnixSocketPath}");
        Console.Out.WriteLine($"data          {dataDir}");
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
