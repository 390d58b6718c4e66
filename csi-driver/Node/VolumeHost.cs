using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// The data path of one staged volume, run as its own process (<c>FeitianK8s.Csi
/// --serve-volume VOLUME --socket PATH --masters ... --node-id NODE [--read-only]</c>) so
/// that it outlives a restart of the node plugin: the RAF engine exported over NBD on a
/// unix socket. A writable engine holds the volume's write lease as NODE; a read-only one
/// takes no lease, so it never fences the volume's writer. Its metrics go to a file beside the
/// socket (<see cref="VolumeHostMetrics"/>), served by the node plugin's /metrics.
/// </summary>
public static class VolumeHost
{
    public static async Task<int> RunAsync(string volumeName, string socketPath, IReadOnlyList<string> masters, string nodeId, bool readOnly, TimeSpan masterWait,
        ILoggerFactory loggers, CancellationToken stop, Core.Security.ComponentTls? tls = null)
    {
        var logger = loggers.CreateLogger("FeitianK8s.Csi.VolumeHost");
        using var fs = new PanguClient(new PanguClientOptions { MasterAddresses = masters, ClientNode = nodeId, MasterUnavailableRetry = masterWait, Tls = tls }, loggers);
        var catalog = new MasterVolumeCatalog(fs.Master);
        var options = new RafOptions { Holder = nodeId };
        await using var volume = readOnly
            ? await RafVolume.OpenReadOnlyAsync(fs, catalog, volumeName, options, loggers.CreateLogger<RafVolume>(), stop)
            : await RafVolume.OpenAsync(fs, catalog, volumeName, options, loggers.CreateLogger<RafVolume>(), stop);
        var device = new VirtualSizeDevice(volume, VirtualSizeDevice.DefaultVirtualSize);
        if (File.Exists(socketPath))
        {
            File.Delete(socketPath);
        }
        await using var nbd = new NbdServer(new DictionaryBlockDeviceProvider(device), new NbdServerOptions
        {
            TcpPort = null,
            UnixSocketPath = socketPath,
            DefaultExportName = volumeName,
        }, loggers.CreateLogger<NbdServer>());
        await nbd.StartAsync(stop);
        logger.LogInformation("Volume {Volume} served on {Socket} ({Size} bytes, read-only={ReadOnly})", volumeName, socketPath, volume.Size, readOnly);
        using var watchStop = CancellationTokenSource.CreateLinkedTokenSource(stop);
        // Per-volume metrics for the node plugin's /metrics (this process opens no port).
        var metrics = new VolumeHostMetrics(VolumeHostMetrics.PathFor(socketPath), logger);
        var publishing = metrics.RunAsync(watchStop.Token);
        var watch = readOnly ? Task.CompletedTask : WatchEpochAsync(volume, catalog, EpochCheckInterval, logger, watchStop.Token);
        var stopped = Task.Delay(Timeout.Infinite, stop);
        await Task.WhenAny(stopped, volume.Fenced);
        await watchStop.CancelAsync();
        await watch;
        await publishing;
        if (volume.Fenced.IsCompleted)
        {
            // Another node holds the volume now: stop serving at once (every request would fail anyway)
            // and exit, so the node plugin sees a dead engine and cleans the stale chain up instead of restarting it.
            logger.LogError("Volume {Volume}: this engine (epoch {Epoch}) is fenced by a newer lease holder; closing {Socket} and exiting",
                volumeName, volume.Guard.Epoch, socketPath);
            await nbd.StopAsync(CancellationToken.None);
            return FencedExitCode;
        }
        logger.LogInformation("Volume {Volume}: stopping", volumeName);
        await nbd.StopAsync(CancellationToken.None);
        await volume.FlushAsync(CancellationToken.None);
        await metrics.WriteAsync(CancellationToken.None);
        return 0;
    }

    /// <summary>Exit code of a volume host whose engine was fenced.</summary>
    public const int FencedExitCode = 3;

    /// <summary>How often a writable engine compares its epoch with the master's (it also learns on its first refused write).</summary>
    public static readonly TimeSpan EpochCheckInterval = TimeSpan.FromSeconds(2);

    /// <summary>Fences the engine as soon as the master's epoch of the volume moved past its own (the lease went to another holder).</summary>
    private static async Task WatchEpochAsync(RafVolume volume, MasterVolumeCatalog catalog, TimeSpan interval, ILogger logger, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                try
                {
                    var info = await catalog.StatAsync(volume.Name, ct);
                    volume.FenceFromMaster(info.Epoch);
                }
                catch (PanguException e)
                {
                    if (ct.IsCancellationRequested)
                    {
                        return;
                    }
                    logger.LogDebug("Volume {Volume}: epoch check failed: {Error}", volume.Name, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
