using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace FeitianK8s.Testing;

/// <summary>
/// A local cluster of real master and chunk-server processes in a temp dir, for one test
/// (or one test class). Disposing stops every process and removes the directory.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    private readonly List<PanguClient> _clients = [];

    private TestCluster(TempDirectory dir, LocalClusterLauncher launcher, ILoggerFactory loggerFactory)
    {
        Dir = dir;
        Launcher = launcher;
        LoggerFactory = loggerFactory;
    }

    public TempDirectory Dir { get; }
    public LocalClusterLauncher Launcher { get; }
    public ILoggerFactory LoggerFactory { get; }

    public static async Task<TestCluster> StartAsync(ILoggerFactory loggerFactory, int chunkServers = 6, int racks = 3, long chunkSize = 4 * 1024 * 1024,
        IReadOnlyList<string>? extraChunkServerArgs = null, IReadOnlyList<string>? extraMasterArgs = null, int masters = 1)
    {
        var dir = new TempDirectory("feitian-e2e");
        try
        {
            var launcher = await LocalClusterLauncher.StartAsync(new LocalClusterOptions
            {
                DataDir = dir.Path,
                ChunkServers = chunkServers,
                Racks = racks,
                ChunkSize = chunkSize,
                Masters = masters,
                ExtraChunkServerArgs = extraChunkServerArgs ?? [],
                // Generous, so that a machine busy with other builds does not declare servers dead.
                ExtraMasterArgs = extraMasterArgs ?? ["--heartbeat-timeout", "15s"],
            }, loggerFactory);
            var cluster = new TestCluster(dir, launcher, loggerFactory);
            await launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
            return cluster;
        }
        catch
        {
            dir.Dispose();
            throw;
        }
    }

    public static Task<TestCluster> StartAsync(ITestOutputHelper output, int chunkServers = 6, int racks = 3, long chunkSize = 4 * 1024 * 1024) =>
        StartAsync(XunitLoggerProvider.CreateFactory(output), chunkServers, racks, chunkSize);

    /// <summary>A client of this cluster running on the given node (default: a node with no chunk server).</summary>
    public PanguClient CreateClient(string clientNode = "client-node")
    {
        var client = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [Launcher.MasterAddress],
            ClientNode = clientNode,
            Tls = Launcher.ClientTls(),
        }, LoggerFactory);
        _clients.Add(client);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _clients)
        {
            c.Dispose();
        }
        try
        {
            await Launcher.DisposeAsync();
        }
        finally
        {
            Dir.Dispose();
        }
    }
}
