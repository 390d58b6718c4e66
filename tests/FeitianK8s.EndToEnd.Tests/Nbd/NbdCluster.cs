using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>One test's own local cluster: a temp DIR with `feitian up` running on it, stoppable and restartable.</summary>
public sealed class NbdCluster : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly IReadOnlyList<string> _arguments;

    private NbdCluster(ITestOutputHelper output, TempDirectory dir, IReadOnlyList<string> arguments)
    {
        _output = output;
        Dir = dir;
        _arguments = arguments;
    }

    public TempDirectory Dir { get; }
    public FeitianUpProcess Up { get; private set; } = null!;
    public string DataDir => Dir.Combine("data");

    /// <summary>The admin certificate `feitian up` made under DATA/tls; null when it runs without TLS.</summary>
    public FeitianK8s.Core.Security.ComponentTls? AdminTls()
    {
        var files = FeitianK8s.Core.Security.LocalPki.Files(FeitianK8s.Core.Security.LocalPki.DirectoryOf(DataDir), FeitianK8s.Core.Security.ComponentRoles.Admin);
        return File.Exists(files.CertFile) ? FeitianK8s.Core.Security.ComponentTls.Load(files) : null;
    }

    public static async Task<NbdCluster> StartAsync(ITestOutputHelper output, params string[] upArguments)
    {
        // Three chunk servers on three racks hold three replicas and start faster than six.
        upArguments = upArguments.Contains("--chunkservers") ? upArguments : [.. upArguments, "--chunkservers", "3", "--racks", "3"];
        var cluster = new NbdCluster(output, new TempDirectory("feitian-nbd"), upArguments);
        try
        {
            cluster.Up = await FeitianUpProcess.StartAsync(output, cluster.DataDir, upArguments);
        }
        catch
        {
            cluster.Dir.Dispose();
            throw;
        }
        return cluster;
    }

    public async Task CreateVolumeAsync(string name, string size, int replicas = 3) =>
        await Up.RunCliCheckedAsync("volume", "create", name, "--size", size, "--replicas", replicas.ToString());

    /// <summary>Stops `up` with SIGTERM and starts it again on the same DIR.</summary>
    public async Task RestartAsync()
    {
        await Up.StopAsync();
        await Up.DisposeAsync();
        Up = await FeitianUpProcess.StartAsync(_output, DataDir, _arguments);
    }

    /// <summary>SIGKILLs `up` (the NBD server dies mid-request), waits for its servers to go, and starts it again.</summary>
    public async Task CrashAndRestartAsync()
    {
        await Up.KillAsync();
        await Up.DisposeAsync();
        Up = await FeitianUpProcess.StartAsync(_output, DataDir, _arguments);
    }

    public async ValueTask DisposeAsync()
    {
        await Up.DisposeAsync();
        Dir.Dispose();
    }
}
