using System.ComponentModel;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Security;
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

    [CommandOption("--tls-ca <FILE>")]
    [Description("CA bundle (PEM) the masters' and chunk servers' certificates chain to (default: DIR/tls/ca.crt of --data).")]
    public string? TlsCa { get; init; }

    [CommandOption("--tls-cert <FILE>")]
    [Description("This client's certificate (PEM), issued by that CA with a feitian role (default: DIR/tls/admin.crt of --data).")]
    public string? TlsCert { get; init; }

    [CommandOption("--tls-key <FILE>")]
    [Description("Private key (PEM) of --tls-cert (default: DIR/tls/admin.key of --data).")]
    public string? TlsKey { get; init; }

    [CommandOption("--insecure")]
    [Description("Talk plain HTTP/2 to a cluster started without TLS (`feitian up --insecure`).")]
    public bool Insecure { get; init; }

    private ComponentTls? _tls;
    private bool _tlsResolved;

    /// <summary>
    /// This client's TLS identity: --tls-ca/--tls-cert/--tls-key (or $FEITIAN_TLS_CA, $FEITIAN_TLS_CERT,
    /// $FEITIAN_TLS_KEY), else DIR/tls/admin.* of --data; null with --insecure or when neither exists.
    /// </summary>
    public ComponentTls? ResolveTls()
    {
        if (_tlsResolved)
        {
            return _tls;
        }
        _tlsResolved = true;
        if (Insecure)
        {
            return null;
        }
        try
        {
            var ca = TlsCa ?? Environment.GetEnvironmentVariable("FEITIAN_TLS_CA");
            var cert = TlsCert ?? Environment.GetEnvironmentVariable("FEITIAN_TLS_CERT");
            var key = TlsKey ?? Environment.GetEnvironmentVariable("FEITIAN_TLS_KEY");
            if (ca is not null || cert is not null || key is not null)
            {
                return _tls = ComponentTls.FromFlags(ca, cert, key);
            }
            var local = LocalPki.Files(LocalPki.DirectoryOf(DataDir), ComponentRoles.Admin);
            return _tls = File.Exists(local.CertFile) ? ComponentTls.Load(local) : null;
        }
        catch (Exception error) when (error is ArgumentException or IOException or System.Security.Cryptography.CryptographicException)
        {
            throw new CliException($"cannot use the TLS certificate: {error.Message}");
        }
    }

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
        using var channels = new GrpcChannelCache(options.MaxMessageBytes, NullLoggerFactory.Instance, ResolveTls());
        return await new MasterConnection(options, channels, NullLogger.Instance).CallAsync(what, call, ct);
    }

    public MasterClient ConnectMaster() => new(FeitianK8s.Core.Common.GrpcChannels.Create(ResolveMasters()[0], tls: ResolveTls()));

    public PanguClient ConnectFileSystem() =>
        new(new PanguClientOptions { MasterAddresses = ResolveMasters().ToList(), ClientNode = Environment.MachineName, Tls = ResolveTls() }, NullLoggerFactory.Instance);
}

public sealed class JsonFlagSettings : ClusterSettings
{
    [CommandOption("--json")]
    [Description("Print JSON instead of a table.")]
    public bool Json { get; init; }
}
