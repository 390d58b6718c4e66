using System.Runtime.InteropServices;
using FeitianK8s.ChunkServer.Hosting;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>The chunk server's Kestrel memory pool: whole large blocks for any size asked, reused once returned, returned once.</summary>
public sealed class LargeBlockMemoryPoolTests
{
    private const int Block = LargeBlockMemoryPool.BlockSize;

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    [InlineData(2048)]
    [InlineData(4096)]
    [InlineData(Block)]
    public void Every_rent_up_to_a_block_gets_a_whole_block(int size)
    {
        using var pool = new LargeBlockMemoryPool();
        using var lease = pool.Rent(size);
        Assert.Equal(Block, lease.Memory.Length);
        Assert.Equal(Block, pool.MaxBufferSize);
    }

    [Fact]
    public void A_rent_larger_than_a_block_is_refused()
    {
        using var pool = new LargeBlockMemoryPool();
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(Block + 1));
    }

    [Fact]
    public void A_returned_block_is_handed_out_again_and_a_second_dispose_returns_nothing()
    {
        using var pool = new LargeBlockMemoryPool();
        var first = pool.Rent(100);
        var block = ArrayOf(first.Memory);
        first.Dispose();
        first.Dispose();
        Assert.Throws<ObjectDisposedException>(() => first.Memory);

        using var again = pool.Rent(100);
        using var other = pool.Rent(100);
        Assert.Same(block, ArrayOf(again.Memory));
        Assert.NotSame(block, ArrayOf(other.Memory)); // the double dispose did not put the block back twice
    }

    [Fact]
    public void The_factory_makes_pools_of_large_blocks()
    {
        using var pool = new LargeBlockMemoryPool.Factory().Create();
        using var lease = pool.Rent(1);
        Assert.Equal(Block, lease.Memory.Length);
    }

    private static byte[] ArrayOf(Memory<byte> memory) =>
        MemoryMarshal.TryGetArray<byte>(memory, out var segment) ? segment.Array! : throw new InvalidOperationException("not array-backed");
}
