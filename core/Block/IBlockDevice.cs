namespace FeitianK8s.Core.Block;

/// <summary>
/// A random-access block device as a frontend (NBD) serves it. Offsets and lengths
/// are bytes and are already range-checked by the caller against <see cref="Size"/>.
/// </summary>
public interface IBlockDevice
{
    string Name { get; }
    long Size { get; }
    bool ReadOnly { get; }

    /// <summary>True only when writes acknowledged on one connection are seen by reads on every other (NBD CAN_MULTI_CONN).</summary>
    bool SupportsMultiConnection { get; }

    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default);

    /// <summary>With <paramref name="fua"/> the write is durable on every replica before it is acknowledged.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default);

    /// <summary>Makes every earlier acknowledged write durable.</summary>
    ValueTask FlushAsync(CancellationToken ct = default);

    /// <summary>Drops the range; it reads as zeros afterwards.</summary>
    ValueTask TrimAsync(long offset, long length, CancellationToken ct = default);

    ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default);
}

/// <summary>Finds the devices a frontend exports, by name.</summary>
public interface IBlockDeviceProvider
{
    /// <summary>Null when no such export exists.</summary>
    ValueTask<IBlockDevice?> OpenAsync(string name, CancellationToken ct = default);

    ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct = default);
}

public enum BlockErrorKind { Io, NoSpace, InvalidArgument, ReadOnly, Fenced }

/// <summary>A device error that a frontend maps onto its protocol's error (NBD: EIO, ENOSPC, EINVAL, EPERM).</summary>
public sealed class BlockDeviceException(BlockErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public BlockErrorKind Kind { get; } = kind;
}
