using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>
/// Kestrel's memory pool for the chunk server: pinned blocks of <see cref="BlockSize"/> bytes instead of
/// Kestrel's 4 KiB. A socket read fills at most one block, so with 4 KiB blocks a 1 MiB append frame took
/// 256 reads (each after a one-byte peek) and as many pipe hand-offs through TLS into the frame reader;
/// with 64 KiB blocks it takes 16. Freed blocks are kept for reuse up to <see cref="MaxRetainedBlocks"/>.
/// </summary>
internal sealed class LargeBlockMemoryPool : MemoryPool<byte>
{
    public const int BlockSize = 64 * 1024;

    /// <summary>At most 32 MiB of idle blocks stay allocated; more are left to the GC.</summary>
    public const int MaxRetainedBlocks = 512;

    private readonly ConcurrentStack<byte[]> _free = new();
    private int _retained;

    public override int MaxBufferSize => BlockSize;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        if (_free.TryPop(out var block))
        {
            Interlocked.Decrement(ref _retained);
        }
        else
        {
            block = GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true);
        }
        return new Lease(this, block);
    }

    protected override void Dispose(bool disposing) => _free.Clear();

    private void Return(byte[] block)
    {
        if (Interlocked.Increment(ref _retained) <= MaxRetainedBlocks)
        {
            _free.Push(block);
        }
        else
        {
            Interlocked.Decrement(ref _retained);
        }
    }

    private sealed class Lease(LargeBlockMemoryPool pool, byte[] block) : IMemoryOwner<byte>
    {
        private byte[]? _block = block;

        public Memory<byte> Memory => _block ?? throw new ObjectDisposedException(nameof(Lease));

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _block, null) is { } returned)
            {
                pool.Return(returned);
            }
        }
    }

    /// <summary>Registered in place of Kestrel's factory, so its socket transport and TLS pipes rent from this pool.</summary>
    public sealed class Factory : IMemoryPoolFactory<byte>
    {
        public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new LargeBlockMemoryPool();
    }
}
