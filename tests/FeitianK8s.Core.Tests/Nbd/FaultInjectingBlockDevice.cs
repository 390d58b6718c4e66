using FeitianK8s.Core.Block;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>
/// Test decorator over a real device: injects failures, can hold reads at an offset until released,
/// and tracks which completed writes a FLUSH covered.
/// </summary>
internal sealed class FaultInjectingBlockDevice(IBlockDevice inner) : IBlockDevice
{
    private long _completedWrites;
    private long _durableWrites;

    public string Name => inner.Name;
    public long Size => inner.Size;
    public bool ReadOnly => inner.ReadOnly;
    public bool SupportsMultiConnection => inner.SupportsMultiConnection;

    /// <summary>Thrown by every operation touching [offset, offset+length) of this range, before the inner device sees it.</summary>
    public (long Offset, long Length, Func<Exception> Error)? FailingRange { get; set; }
    public Func<Exception>? FailFlush { get; set; }

    /// <summary>Reads starting exactly here wait until the gate opens.</summary>
    public (long Offset, TaskCompletionSource Gate)? HeldRead { get; set; }

    /// <summary>Completes when a read reaches the held offset.</summary>
    public TaskCompletionSource HeldReadArrived { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public long CompletedWrites => Interlocked.Read(ref _completedWrites);

    /// <summary>Completed writes as counted when the last successful flush started: all of them are durable.</summary>
    public long DurableWrites => Interlocked.Read(ref _durableWrites);

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        Check(offset, buffer.Length);
        if (HeldRead is { } held && held.Offset == offset)
        {
            HeldReadArrived.TrySetResult();
            await held.Gate.Task.WaitAsync(ct);
        }
        await inner.ReadAsync(offset, buffer, ct);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default)
    {
        Check(offset, data.Length);
        await Task.Yield(); // complete asynchronously, like a real device
        await inner.WriteAsync(offset, data, fua, ct);
        Interlocked.Increment(ref _completedWrites);
    }

    public async ValueTask FlushAsync(CancellationToken ct = default)
    {
        if (FailFlush is { } fail)
            throw fail();
        long covered = CompletedWrites;
        await inner.FlushAsync(ct);
        long current;
        while ((current = Interlocked.Read(ref _durableWrites)) < covered && Interlocked.CompareExchange(ref _durableWrites, covered, current) != current)
        {
        }
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken ct = default)
    {
        Check(offset, length);
        return inner.TrimAsync(offset, length, ct);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default)
    {
        Check(offset, length);
        return inner.WriteZeroesAsync(offset, length, fua, ct);
    }

    private void Check(long offset, long length)
    {
        if (FailingRange is { } range && offset < range.Offset + range.Length && range.Offset < offset + length)
            throw range.Error();
    }
}
