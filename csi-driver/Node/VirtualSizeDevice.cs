using FeitianK8s.Core.Block;
using FeitianK8s.Core.Raf;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Exports a RAF volume with a fixed, large virtual size, so the nbdfuse file never has
/// to change size: the loop device on top limits what is visible (its size limit follows
/// the volume on expansion). Reads past the volume's size return zeros; a write past it
/// first re-reads the size from the master (the volume may just have grown) and fails
/// with NoSpace if it is still out of bounds.
/// </summary>
public sealed class VirtualSizeDevice(RafVolume volume, long virtualSize) : IBlockDevice
{
    public const long DefaultVirtualSize = 64L << 40;

    public string Name => volume.Name;
    public long Size => virtualSize;
    public bool ReadOnly => volume.ReadOnly;
    public bool SupportsMultiConnection => volume.SupportsMultiConnection;
    public RafVolume Volume => volume;

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        var size = volume.Size;
        var inside = (int)Math.Clamp(size - offset, 0, buffer.Length);
        if (inside > 0)
        {
            await volume.ReadAsync(offset, buffer[..inside], ct);
        }
        buffer.Span[inside..].Clear();
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default)
    {
        await EnsureInsideAsync(offset, data.Length, ct);
        await volume.WriteAsync(offset, data, fua, ct);
    }

    public ValueTask FlushAsync(CancellationToken ct = default) => volume.FlushAsync(ct);

    public async ValueTask TrimAsync(long offset, long length, CancellationToken ct = default)
    {
        var inside = Math.Clamp(volume.Size - offset, 0, length);
        if (inside > 0)
        {
            await volume.TrimAsync(offset, inside, ct);
        }
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default)
    {
        await EnsureInsideAsync(offset, length, ct);
        await volume.WriteZeroesAsync(offset, length, fua, ct);
    }

    private async ValueTask EnsureInsideAsync(long offset, long length, CancellationToken ct)
    {
        if (offset + length <= volume.Size)
        {
            return;
        }
        await volume.RefreshSizeAsync(ct);
        if (offset + length > volume.Size)
        {
            throw new BlockDeviceException(BlockErrorKind.NoSpace,
                $"volume {volume.Name}: write of {length} bytes at {offset} ends past its size {volume.Size}");
        }
    }
}
