using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// The data path of one staged volume, run as its own process (<c>FeitianK8s.Csi
/// --serve-volume VOLUME --socket PATH --masters ... --node-id NODE</c>) so that it
/// outlives a restart of the node plugin: the RAF engine (holding the write lease as
/// NODE) exported over NBD on a unix socket.
/// </summary>
public static class VolumeHost
{
    public static async Task<int> RunAsync(string volumeName, string socketPath, IReadOnlyList<string> masters, string nodeId, ILoggerFactory loggers, CancellationToken stop)
    {
        var logger = loggers.CreateLogger("FeitianK8s.Csi.VolumeHost");
        using var fs = new PanguClient(new PanguClientOptions { MasterAddresses = masters, ClientNode = nodeId }, loggers);
        var catalog = new MasterVolumeCatalog(fs.Master);
        await using var volume = await RafVolume.OpenAsync(fs, catalog, volumeName, new RafOptions { Holder = nodeId }, loggers.CreateLogger<RafVolume>(), stop);
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
        logger.LogInformation("Volume {Volume} served on {Socket} ({Size} bytes)", volumeName, socketPath, volume.Size);
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
