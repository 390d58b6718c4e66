using FeitianK8s.Core.Common;
using FeitianK8s.Csi.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Agent;

/// <summary>
/// The volume-host agent as a library: gRPC (HTTP/2) on a unix socket in a 0700 directory, over
/// <see cref="HelperSupervisor"/>. Stopping it leaves every helper running (they are detached):
/// a new agent on the same state dir finds them again.
/// </summary>
public sealed class VolumeHostAgentHost : IAsyncDisposable
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly WebApplication _app;

    private VolumeHostAgentHost(WebApplication app, VolumeHostAgentOptions options)
    {
        _app = app;
        Options = options;
    }

    public VolumeHostAgentOptions Options { get; }

    public IServiceProvider Services => _app.Services;

    public static VolumeHostAgentHost Create(VolumeHostAgentOptions options, Action<ILoggingBuilder>? logging = null)
    {
        var builder = ServerHostBuilder.CreateSlim();
        HostLogging.Configure(builder.Logging, logging);
        builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(options.SocketPath, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(sp => new HelperSupervisor(options.StateDir, options.VolumeHosts, sp.GetRequiredService<ILogger<HelperSupervisor>>()));
        var app = builder.Build();
        app.MapGrpcService<VolumeHostAgentService>();
        return new VolumeHostAgentHost(app, options);
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        var dir = Path.GetDirectoryName(Options.SocketPath)!;
        Directory.CreateDirectory(dir);
        // The socket is the agent's only protection (it starts processes as root): only root may reach it.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(dir, OwnerOnly);
        }
        if (File.Exists(Options.SocketPath))
        {
            File.Delete(Options.SocketPath);
        }
        var supervisor = _app.Services.GetRequiredService<HelperSupervisor>();
        await _app.StartAsync(ct);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(Options.SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        _app.Services.GetRequiredService<ILogger<VolumeHostAgentHost>>().LogInformation(
            "Volume-host agent of node {Node} serving on {Socket}; {Count} helpers known", Options.VolumeHosts.NodeId, Options.SocketPath,
            (await supervisor.ListAsync(ct)).Count);
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
