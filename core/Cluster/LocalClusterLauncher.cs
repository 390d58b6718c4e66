using System.Globalization;
using FeitianK8s.Core.Security;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Cluster;

/// <summary>One server of a local cluster: its data dir, identity, last endpoints and process.</summary>
public sealed class LocalServer(string name, string dataDir, string node, string rack)
{
    public string Name { get; } = name;
    public string DataDir { get; } = dataDir;
    public string Node { get; } = node;
    public string Rack { get; } = rack;
    public ServerEndpoints? Endpoints { get; internal set; }
    public ChildProcess? Process { get; internal set; }
    public bool IsRunning => Process is { HasExited: false };
    public string Id => Endpoints?.Id ?? "";
    public string GrpcAddress => Endpoints?.Grpc ?? throw new InvalidOperationException($"{Name} has not started");
    public string HttpAddress => Endpoints?.Http ?? throw new InvalidOperationException($"{Name} has not started");
}

/// <summary>
/// Runs 1, 3 or 5 masters (one Raft group) and N chunk servers as child processes on
/// 127.0.0.1 (used by `feitian up` and the end-to-end tests). Layout under DIR: DIR/master
/// (one master) or DIR/master-&lt;i&gt; (i from 1), DIR/chunkserver-&lt;i&gt; (i from 1),
/// DIR/cluster.json. Chunk server i is node "node-i" on rack "rack-((i-1) % racks + 1)".
/// Ports (gRPC and Raft) are chosen on first start and kept on restarts, so clients and
/// peers keep working. Every chunk server and client is given every master's address.
/// Unless <see cref="LocalClusterOptions.Insecure"/>, DIR/tls holds the cluster CA and one
/// certificate per role (<see cref="LocalPki"/>): masters and chunk servers serve mutual TLS,
/// and <see cref="ClientTls"/> gives clients theirs.
/// </summary>
public sealed class LocalClusterLauncher : IAsyncDisposable
{
    private readonly LocalClusterOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ServerExecutable _masterExe;
    private readonly ServerExecutable _chunkServerExe;
    private readonly SemaphoreSlim _lock = new(1, 1);

    private LocalClusterLauncher(LocalClusterOptions options, ILoggerFactory loggerFactory)
    {
        if (options.ChunkServers < 1 || options.Racks < 1)
        {
            throw new ArgumentException($"need at least one chunk server and one rack (got {options.ChunkServers} and {options.Racks})", nameof(options));
        }
        if (options.Masters is not (1 or 3 or 5))
        {
            throw new ArgumentException($"masters must be 1, 3 or 5 (got {options.Masters})", nameof(options));
        }
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<LocalClusterLauncher>();
        _masterExe = ServerExecutable.Find("FeitianK8s.Master", options.BinDirectory);
        _chunkServerExe = ServerExecutable.Find("FeitianK8s.ChunkServer", options.BinDirectory);
        DataDir = Path.GetFullPath(options.DataDir);
        // Exists before any port is reserved for it: a reservation whose holder is missing counts as stale.
        Directory.CreateDirectory(DataDir);
        TlsDirectory = options.Insecure ? null : LocalPki.DirectoryOf(DataDir);
        Masters = options.Masters == 1
            ? [new LocalServer("master", Path.Combine(DataDir, "master"), "", "")]
            : Enumerable.Range(1, options.Masters).Select(i => new LocalServer($"master-{i}", Path.Combine(DataDir, $"master-{i}"), "", "")).ToArray();
        _masterPorts = PlanMasterPorts(options, DataDir);
        ChunkServers = Enumerable.Range(1, options.ChunkServers)
            .Select(i => new LocalServer($"chunkserver-{i}", Path.Combine(DataDir, $"chunkserver-{i}"), $"node-{i}", $"rack-{((i - 1) % options.Racks) + 1}"))
            .ToArray();
    }

    public string DataDir { get; }

    /// <summary>DIR/tls with the CA and per-role certificates; null for a cluster without TLS.</summary>
    public string? TlsDirectory { get; }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, ComponentTls> _clientTls = new(StringComparer.Ordinal);

    /// <summary>The TLS identity of <paramref name="role"/> (default the admin CLI's) from DIR/tls; null without TLS.</summary>
    public ComponentTls? ClientTls(string role = ComponentRoles.Admin) =>
        TlsDirectory is null ? null : _clientTls.GetOrAdd(role, r => ComponentTls.Load(LocalPki.Files(TlsDirectory, r)));

    private string Scheme => TlsDirectory is null ? "http" : "https";

    /// <summary>The masters of the Raft group (one or more).</summary>
    public IReadOnlyList<LocalServer> Masters { get; }

    /// <summary>The first master (the only one of a single-master cluster).</summary>
    public LocalServer Master => Masters[0];

    private readonly (int Grpc, int Raft)[] _masterPorts;

    /// <summary>gRPC address of every master, as chunk servers and clients are given them.</summary>
    public IReadOnlyList<string> MasterAddresses => Masters.Select((m, i) => m.Endpoints?.Grpc ?? $"{Scheme}://127.0.0.1:{_masterPorts[i].Grpc}").ToList();

    private IReadOnlyList<string> RaftPeers => _masterPorts.Select(p => $"127.0.0.1:{p.Raft}").ToList();

    /// <summary>Chunk servers; <see cref="ChunkServer(int)"/> indexes them from 1.</summary>
    public IReadOnlyList<LocalServer> ChunkServers { get; }

    public LocalServer ChunkServer(int index) => ChunkServers[index - 1];

    public string MasterAddress => Master.GrpcAddress;

    /// <summary>Starts the master, then every chunk server, and writes DIR/cluster.json.</summary>
    public static async Task<LocalClusterLauncher> StartAsync(LocalClusterOptions options, ILoggerFactory loggerFactory, CancellationToken ct = default)
    {
        var cluster = new LocalClusterLauncher(options, loggerFactory);
        try
        {
            Directory.CreateDirectory(cluster.DataDir);
            if (cluster.TlsDirectory is { } tls)
            {
                LocalPki.Ensure(tls, cluster._logger);
            }
            await Task.WhenAll(Enumerable.Range(0, cluster.Masters.Count).Select(i => cluster.StartMasterAsync(i, i == 0 ? options.MasterHttpPort : 0, ct)));
            await Task.WhenAll(Enumerable.Range(1, options.ChunkServers).Select(i =>
                cluster.StartChunkServerAsync(i, options.ChunkServerPorts.GetValueOrDefault(i) is var known and > 0 ? KeptPort(known, cluster.DataDir) : FreePort(cluster.DataDir), ct)));
            cluster.WriteClusterFile();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Waits until the master reports every running chunk server alive.</summary>
    public async Task WaitForChunkServersAliveAsync(TimeSpan? timeout = null, CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + (timeout ?? _options.StartTimeout);
        while (true)
        {
            var running = ChunkServers.Where(s => s.IsRunning).Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
            try
            {
                var status = await GetClusterStatusAsync(ct);
                var alive = status.ChunkServers.Where(s => s.Alive).Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
                if (running.IsSubsetOf(alive))
                {
                    return;
                }
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"chunk servers {string.Join(",", running.Except(alive))} not alive at the master after {timeout ?? _options.StartTimeout}");
                }
            }
            catch (Grpc.Core.RpcException e) when (DateTime.UtcNow <= deadline)
            {
                _logger.LogDebug("cluster status not available yet: {Code}", e.StatusCode);
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>Waits until the master reports the given chunk servers (by index) dead.</summary>
    public async Task WaitForChunkServersDeadAsync(IEnumerable<int> indexes, TimeSpan timeout, CancellationToken ct = default)
    {
        var ids = indexes.Select(i => ChunkServer(i).Id).ToHashSet(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var status = await GetClusterStatusAsync(ct);
            if (status.ChunkServers.Where(s => ids.Contains(s.Id)).All(s => !s.Alive))
            {
                return;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"chunk servers {string.Join(",", ids)} still alive at the master after {timeout}");
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>
    /// The cluster status from the leader (followers refuse with UNAVAILABLE: the next master is asked). While every
    /// master refuses (an election right after a leader change), it asks again for up to 15 s.
    /// </summary>
    public async Task<ClusterStatus> GetClusterStatusAsync(CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            Grpc.Core.RpcException? last = null;
            foreach (var address in MasterAddresses)
            {
                try
                {
                    using var channel = Common.GrpcChannels.Create(address, tls: ClientTls());
                    var client = new Proto.Master.Master.MasterClient(channel);
                    return await client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
                }
                catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unavailable && Masters.Count > 1)
                {
                    last = e;
                }
            }
            if (DateTime.UtcNow >= deadline)
            {
                throw last!;
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>SIGKILL chunk server i (from 1).</summary>
    public void KillChunkServer(int index) => ChunkServer(index).Process?.Kill();

    public void KillMaster() => Master.Process?.Kill();

    /// <summary>SIGKILL master i (from 0).</summary>
    public void KillMaster(int index) => Masters[index].Process?.Kill();

    /// <summary>Stops chunk server i cleanly (SIGTERM).</summary>
    public Task StopChunkServerAsync(int index) => ChunkServer(index).Process?.StopAsync(_options.StopTimeout) ?? Task.CompletedTask;

    /// <summary>Starts chunk server i again on its previous port (kills it first if it still runs).</summary>
    public async Task RestartChunkServerAsync(int index, CancellationToken ct = default)
    {
        var server = ChunkServer(index);
        if (server.IsRunning)
        {
            await server.Process!.StopAsync(_options.StopTimeout);
        }
        await StartChunkServerAsync(index, server.Endpoints?.GrpcPort ?? 0, ct);
        WriteClusterFile();
    }

    /// <summary>Starts master i (from 0) again on its previous ports (kills it first if it still runs).</summary>
    public async Task RestartMasterAsync(int index = 0, CancellationToken ct = default)
    {
        var master = Masters[index];
        if (master.IsRunning)
        {
            await master.Process!.StopAsync(_options.StopTimeout);
        }
        await StartMasterAsync(index, master.Endpoints?.HttpPort ?? _options.MasterHttpPort, ct);
        WriteClusterFile();
    }

    /// <summary>
    /// Has <paramref name="supervisor"/> restart every master and chunk server that dies, on
    /// their previous ports (a chunk server's address is recorded by the master; clients keep the
    /// masters'). Stop the supervisor before <see cref="StopAsync"/>.
    /// </summary>
    public void SuperviseWith(ChildSupervisor supervisor)
    {
        for (var m = 0; m < Masters.Count; m++)
        {
            var index = m;
            supervisor.Watch(Masters[index].Name, () => Masters[index].Process, ct => RestartMasterAsync(index, ct));
        }
        for (var i = 1; i <= ChunkServers.Count; i++)
        {
            var index = i;
            supervisor.Watch(ChunkServer(index).Name, () => ChunkServer(index).Process, ct => RestartChunkServerAsync(index, ct));
        }
    }

    /// <summary>SIGTERM every server (chunk servers first), SIGKILL those that do not exit in time.</summary>
    public async Task StopAsync()
    {
        await Task.WhenAll(ChunkServers.Select(s => s.Process?.StopAsync(_options.StopTimeout) ?? Task.CompletedTask));
        await Task.WhenAll(Masters.Select(m => m.Process?.StopAsync(_options.StopTimeout) ?? Task.CompletedTask));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync();
        }
        finally
        {
            foreach (var s in ChunkServers.Concat(Masters))
            {
                s.Process?.Dispose();
            }
        }
    }

    /// <summary>gRPC and Raft ports of every master: those of the previous run, else free ones now.</summary>
    private static (int Grpc, int Raft)[] PlanMasterPorts(LocalClusterOptions options, string dataDir)
    {
        var previous = options.PreviousMasters.Count == options.Masters ? options.PreviousMasters : [];
        return Enumerable.Range(0, options.Masters).Select(i =>
        {
            if (i < previous.Count && Uri.TryCreate(previous[i].Grpc, UriKind.Absolute, out var grpc)
                && int.TryParse(previous[i].Raft[(previous[i].Raft.LastIndexOf(':') + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var raft))
            {
                return (KeptPort(grpc.Port, dataDir), KeptPort(raft, dataDir));
            }
            var grpcPort = i == 0 && options.MasterPort != 0 ? KeptPort(options.MasterPort, dataDir) : FreePort(dataDir);
            return (grpcPort, FreePort(dataDir));
        }).ToArray();
    }

    /// <summary>A port for a server of this cluster, reserved for DIR so that no other cluster picks it while that server restarts.</summary>
    private static int FreePort(string dataDir) => Common.ListenPorts.Pick(holder: dataDir);

    /// <summary>A port this cluster keeps from an earlier run (or was told to use): reserved for DIR again, e.g. after a reboot emptied the reservations.</summary>
    private static int KeptPort(int port, string dataDir)
    {
        Common.ListenPorts.Hold(port, dataDir);
        return port;
    }

    private async Task StartMasterAsync(int index, int httpPort, CancellationToken ct)
    {
        var master = Masters[index];
        var args = new List<string> { "--data", master.DataDir, "--port", Num(_masterPorts[index].Grpc), "--http-port", Num(httpPort) };
        if (Masters.Count > 1)
        {
            args.AddRange(["--peers", string.Join(",", RaftPeers), "--raft-endpoint", RaftPeers[index]]);
        }
        else
        {
            args.AddRange(["--raft-port", Num(_masterPorts[index].Raft)]);
        }
        if (_options.ChunkSize is { } size)
        {
            args.AddRange(["--chunk-size", Num(size)]);
        }
        args.AddRange(TlsArgs(ComponentRoles.Master));
        args.AddRange(_options.ExtraMasterArgs);
        await StartAsync(master, _masterExe, args, ct);
    }

    private async Task StartChunkServerAsync(int index, int port, CancellationToken ct)
    {
        var server = ChunkServer(index);
        var args = new List<string>
        {
            "--data", server.DataDir, "--master", string.Join(",", MasterAddresses), "--node", server.Node, "--rack", server.Rack,
            "--port", Num(port), "--http-port", "0",
        };
        if (_options.ChunkSize is { } size)
        {
            args.AddRange(["--chunk-size", Num(size)]);
        }
        args.AddRange(TlsArgs(ComponentRoles.ChunkServer));
        args.AddRange(_options.ExtraChunkServerArgs);
        await StartAsync(server, _chunkServerExe, args, ct);
    }

    /// <summary>Starts a server and waits for the endpoints.json it writes once bound (a stale one is deleted first).</summary>
    private async Task StartAsync(LocalServer server, ServerExecutable exe, List<string> args, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            Directory.CreateDirectory(server.DataDir);
            File.Delete(Path.Combine(server.DataDir, ServerEndpoints.FileName));
            server.Process?.Dispose();
            server.Process = ChildProcess.Start(server.Name, exe.FileName, exe.PrefixArguments.Concat(args), _loggerFactory.CreateLogger($"FeitianK8s.Cluster.{server.Name}"));
        }
        finally
        {
            _lock.Release();
        }
        var deadline = DateTime.UtcNow + _options.StartTimeout;
        while (true)
        {
            var endpoints = ServerEndpoints.TryRead(server.DataDir);
            if (endpoints is not null)
            {
                server.Endpoints = endpoints;
                _logger.LogInformation("{Server} is up: id {Id}, grpc {Grpc}, http {Http}", server.Name, endpoints.Id, endpoints.Grpc, endpoints.Http);
                return;
            }
            if (server.Process.HasExited)
            {
                throw new InvalidOperationException($"{server.Name} exited with code {server.Process.ExitCode} before writing {ServerEndpoints.FileName} in {server.DataDir}");
            }
            if (DateTime.UtcNow > deadline)
            {
                server.Process.Kill();
                throw new TimeoutException($"{server.Name} did not write {ServerEndpoints.FileName} in {server.DataDir} within {_options.StartTimeout}");
            }
            await Task.Delay(50, ct);
        }
    }

    private IReadOnlyList<string> TlsArgs(string role) => TlsDirectory is null ? [] : LocalPki.Files(TlsDirectory, role).ToArgs();

    private void WriteClusterFile() =>
        new ClusterFile(
            MasterAddresses,
            ChunkServers.Where(s => s.Endpoints is not null)
                .Select(s => new ClusterFileChunkServer(s.Id, s.Node, s.Rack, s.GrpcAddress, s.HttpAddress)).ToArray(),
            MasterAddresses.Zip(RaftPeers, (grpc, raft) => new ClusterFileMaster(grpc, raft)).ToArray())
        .Write(DataDir);

    private static string Num(long value) => value.ToString(CultureInfo.InvariantCulture);
}
