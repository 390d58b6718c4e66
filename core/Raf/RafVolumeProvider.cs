using System.Collections.Concurrent;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// Exports every volume of the cluster, opening one RAF engine per volume on first
/// use and sharing it between connections. Each open refreshes the size, so a grown
/// volume is seen by the next connection.
/// </summary>
public sealed class RafVolumeProvider(IPanguFileSystem fs, MasterVolumeCatalog catalog, RafOptions options, ILoggerFactory loggers)
    : IBlockDeviceProvider, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<Task<RafVolume>>> _volumes = new(StringComparer.Ordinal);
    private readonly ILogger _logger = loggers.CreateLogger<RafVolumeProvider>();

    public async ValueTask<IBlockDevice?> OpenAsync(string name, CancellationToken ct = default)
    {
        if (string.IsNullOrEmpty(name))
        {
            return null;
        }
        var opening = _volumes.GetOrAdd(name, key => new Lazy<Task<RafVolume>>(() => OpenVolumeAsync(key)));
        try
        {
            var volume = await opening.Value.WaitAsync(ct);
            await volume.RefreshSizeAsync(ct);
            return volume;
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
            _volumes.TryRemove(new KeyValuePair<string, Lazy<Task<RafVolume>>>(name, opening));
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A failed open is not cached: the next connection tries again.
            _volumes.TryRemove(new KeyValuePair<string, Lazy<Task<RafVolume>>>(name, opening));
            _logger.LogError(e, "Opening volume {Volume} failed", name);
            throw;
        }
    }

    public async ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct = default) => await catalog.ListAsync(ct);

    private Task<RafVolume> OpenVolumeAsync(string name) =>
        RafVolume.OpenAsync(fs, catalog, name, options, loggers.CreateLogger<RafVolume>(), CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        foreach (var (name, opening) in _volumes)
        {
            if (!opening.IsValueCreated)
            {
                continue;
            }
            try
            {
                await (await opening.Value).DisposeAsync();
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Closing volume {Volume} failed", name);
            }
        }
        _volumes.Clear();
    }
}
