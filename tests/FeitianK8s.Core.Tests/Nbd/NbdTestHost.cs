using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>A real <see cref="NbdServer"/> on 127.0.0.1 (OS-chosen port) and a unix socket in a temp dir.</summary>
internal sealed class NbdTestHost : IAsyncDisposable
{
    private readonly ILoggerFactory _loggers;

    private NbdTestHost(ITestOutputHelper output, DictionaryBlockDeviceProvider exports, NbdServerOptions options, string directory)
    {
        Directory = directory;
        Exports = exports;
        _loggers = LoggerFactory.Create(builder => builder.AddProvider(new TestOutputLoggerProvider(output)).SetMinimumLevel(LogLevel.Information));
        Server = new NbdServer(exports, options, _loggers.CreateLogger<NbdServer>());
    }

    public string Directory { get; }
    public DictionaryBlockDeviceProvider Exports { get; }
    public NbdServer Server { get; }
    public int Port => Server.TcpEndPoint!.Port;
    public string SocketPath => Server.UnixSocketPath!;

    public static async Task<NbdTestHost> StartAsync(ITestOutputHelper output, IEnumerable<IBlockDevice> devices, Action<NbdServerOptions>? configure = null, string? directory = null)
    {
        directory ??= System.IO.Directory.CreateTempSubdirectory("feitian-nbd-").FullName;
        System.IO.Directory.CreateDirectory(directory);
        var options = new NbdServerOptions { TcpPort = 0, UnixSocketPath = Path.Combine(directory, "nbd.sock") };
        configure?.Invoke(options);
        var host = new NbdTestHost(output, new DictionaryBlockDeviceProvider(devices), options, directory);
        await host.Server.StartAsync();
        return host;
    }

    public string TcpUri(string export) => $"nbd://127.0.0.1:{Port}/{export}";

    public string UnixUri(string export) => $"nbd+unix:///{export}?socket={SocketPath}";

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _loggers.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // a mount left behind by a failed test must not mask the failure itself
        }
    }
}
