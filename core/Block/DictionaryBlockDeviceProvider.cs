using System.Collections.Concurrent;

namespace FeitianK8s.Core.Block;

/// <summary>Exports a mutable set of devices by name (tests, and hosts that manage devices themselves).</summary>
public sealed class DictionaryBlockDeviceProvider : IBlockDeviceProvider
{
    private readonly ConcurrentDictionary<string, IBlockDevice> _devices = new(StringComparer.Ordinal);

    public DictionaryBlockDeviceProvider(params IEnumerable<IBlockDevice> devices)
    {
        foreach (var device in devices)
            Add(device);
    }

    /// <summary>Adds a device under its <see cref="IBlockDevice.Name"/>; a duplicate name is an error.</summary>
    public void Add(IBlockDevice device)
    {
        if (!_devices.TryAdd(device.Name, device))
            throw new ArgumentException($"an export named '{device.Name}' already exists");
    }

    /// <summary>Stops offering the device to new clients; sessions already attached keep it.</summary>
    public bool Remove(string name) => _devices.TryRemove(name, out _);

    public ValueTask<IBlockDevice?> OpenAsync(string name, CancellationToken ct = default) =>
        ValueTask.FromResult(_devices.TryGetValue(name, out var device) ? device : null);

    public ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct = default) =>
        ValueTask.FromResult<IReadOnlyList<string>>(_devices.Keys.Order(StringComparer.Ordinal).ToList());
}
