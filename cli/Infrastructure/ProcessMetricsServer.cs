using System.Net;
using FeitianK8s.Core.Common;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace FeitianK8s.Cli.Infrastructure;

/// <summary>/metrics of this process (the volume engines' feitian_raf_* and the NBD server's feitian_nbd_*) on 127.0.0.1.</summary>
public sealed class ProcessMetricsServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ProcessMetricsServer(WebApplication app, string address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>e.g. http://127.0.0.1:40123</summary>
    public string Address { get; }

    public static async Task<ProcessMetricsServer> StartAsync(int port, CancellationToken ct)
    {
        var builder = ServerHostBuilder.CreateSlim();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        app.MapMetrics("/metrics");
        await app.StartAsync(ct);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ProcessMetricsServer(app, address.Replace("localhost", "127.0.0.1", StringComparison.Ordinal));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }
}
