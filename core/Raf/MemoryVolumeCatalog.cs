using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>An in-memory <see cref="IVolumeCatalog"/> for tests. Pass <see cref="EpochOf"/> to a <see cref="MemoryPanguFileSystem"/> so it honors volume guards.</summary>
public sealed class MemoryVolumeCatalog : IVolumeCatalog
{
    private readonly object _gate = new();
    private readonly Dictionary<string, RafVolumeInfo> _volumes = new(StringComparer.Ordinal);

    public RafVolumeInfo Create(string name, long sizeBytes, int replicas = 3, string? directory = null)
    {
        if (sizeBytes <= 0 || sizeBytes % 4096 != 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"volume {name}: size {sizeBytes} is not a positive multiple of 4096");
        }
        lock (_gate)
        {
            if (_volumes.ContainsKey(name))
            {
                throw new PanguException(PanguErrorKind.AlreadyExists, $"volume {name} already exists");
            }
            var info = new RafVolumeInfo(name, sizeBytes, replicas, directory ?? $"/volumes/{name}", 0);
            _volumes[name] = info;
            return info;
        }
    }

    public void Resize(string name, long sizeBytes)
    {
        lock (_gate)
        {
            _volumes[name] = Get(name) with { SizeBytes = sizeBytes };
        }
    }

    public ulong? EpochOf(string name)
    {
        lock (_gate)
        {
            return _volumes.TryGetValue(name, out var info) ? info.Epoch : null;
        }
    }

    public Task<RafVolumeInfo> StatAsync(string name, CancellationToken ct = default)
    {
        lock (_gate)
        {
            return Task.FromResult(Get(name));
        }
    }

    public Task<ulong> AcquireLeaseAsync(string name, string holder, CancellationToken ct = default)
    {
        lock (_gate)
        {
            var info = Get(name);
            var next = info with { Epoch = info.Epoch + 1 };
            _volumes[name] = next;
            return Task.FromResult(next.Epoch);
        }
    }

    private RafVolumeInfo Get(string name) =>
        _volumes.TryGetValue(name, out var info)
            ? info
            : throw new PanguException(PanguErrorKind.NotFound, $"volume {name} not found");
}
