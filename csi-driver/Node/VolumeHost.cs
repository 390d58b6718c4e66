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
/// takes no lease, so it never fences the volume's writer.
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
        try
        {
            await Task.Delay(Timeout.Infinite, stop);
        }
        catch (OperationCanceledException)
        {
        }
        logger.LogInformation("Volume {Volume}: stopping", volumeName);
        await nbd.StopAsync(CancellationToken.None);
        await volume.FlushAsync(CancellationToken.None);
        return 0;
    }
}
