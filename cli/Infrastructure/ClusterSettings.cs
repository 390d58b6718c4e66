using System.ComponentModel;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging.Abstractions;
using Spectre.Console.Cli;
using MasterClient = FeitianK8s.Proto.Master.Master.MasterClient;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>Options every command that talks to a cluster shares: where to find it.</summary>
public class ClusterSettings : CommandSettings
{
    public const string DefaultDataDir = "./feitian-data";

    [CommandOption("--data <DIR>")]
    [Description("Data directory of a local cluster (its cluster.json names the masters).")]
    public string DataDir { get; init; } = DefaultDataDir;

    [CommandOption("--master <ADDRESS>")]
    [Description("Master gRPC address, e.g. http://127.0.0.1:9000 (overrides --data).")]
    public string? Master { get; init; }

    /// <summary>Master addresses: --master, else $FEITIAN_MASTER, else DIR/cluster.json.</summary>
    public IReadOnlyList<string> ResolveMasters()
    {
        var explicitMaster = Master ?? Environment.GetEnvironmentVariable("FEITIAN_MASTER");
        if (!string.IsNullOrWhiteSpace(explicitMaster))
        {
            return explicitMaster.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        if (!File.Exists(Path.Combine(DataDir, ClusterFile.FileName)))
        {
            throw new CliException($"no cluster at {Path.GetFullPath(DataDir)} (start one with `feitian up --data {DataDir}`, or pass --master)");
        }
        var masters = ClusterFile.Read(DataDir).Masters;
        return masters.Count > 0 ? masters : throw new CliException($"{Path.Combine(DataDir, ClusterFile.FileName)} names no master");
    }

    /// <summary>How long a CLI command waits for a master (restart, election) before it reports the failure.</summary>
    public static readonly TimeSpan MasterWait = TimeSpan.FromSeconds(30);

    /// <summary>Deadline of one attempt: generous, a busy master may take long to answer.</summary>
    public static readonly TimeSpan MasterCallTimeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Calls the masters through <see cref="MasterConnection"/>: rides out a short master outage and
    /// follows a follower's pointer to the leader. Failures surface as the master's <see cref="Grpc.Core.RpcException"/>.
    /// </summary>
    public async Task<T> CallMasterAsync<T>(string what, Func<MasterClient, Grpc.Core.CallOptions, Task<T>> call, CancellationToken ct)
    {
        var options = new PanguClientOptions
        {
            MasterAddresses = ResolveMasters().ToList(),
            MasterUnavailableRetry = MasterWait,
            MasterTimeout = MasterCallTimeout,
        };
        using var channels = new GrpcChannelCache(options.MaxMessageBytes, NullLoggerFactory.Instance);
        return await new MasterConnection(options, channels, NullLogger.Instance).CallAsync(what, call, ct);
    }

    public MasterClient ConnectMaster() => new(FeitianK8s.Core.Common.GrpcChannels.Create(ResolveMasters()[0]));

    public PanguClient ConnectFileSystem() =>
        new(new PanguClientOptions { MasterAddresses = ResolveMasters().ToList(), ClientNode = Environment.MachineName }, NullLoggerFactory.Instance);
}

public sealed class JsonFlagSettings : ClusterSettings
{
    [CommandOption("--json")]
    [Description("Print JSON instead of a table.")]
    public bool Json { get; init; }
}
