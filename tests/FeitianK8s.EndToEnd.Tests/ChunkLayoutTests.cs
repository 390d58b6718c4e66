using FeitianK8s.Core.Pangu;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>Offset-to-chunk mapping of the client (no servers needed), including the empty chunks a replica failure leaves behind.</summary>
public sealed class ChunkLayoutTests
{
    private static PanguChunk Chunk(ulong id, long offset, long length) => new(id, offset, length, true, false, []);

    [Fact]
    public void Offsets_map_to_the_chunk_that_holds_them_skipping_empty_chunks()
    {
        var layout = new ChunkLayout([Chunk(1, 0, 100), Chunk(2, 100, 0), Chunk(3, 100, 50), Chunk(4, 150, 0), Chunk(5, 150, 10)]);
        Assert.Equal(160, layout.Length);
        Assert.Equal(0, layout.IndexOf(0));
        Assert.Equal(0, layout.IndexOf(99));
        Assert.Equal(2, layout.IndexOf(100));
        Assert.Equal(2, layout.IndexOf(149));
        Assert.Equal(4, layout.IndexOf(150));
        Assert.Equal(4, layout.IndexOf(159));
        Assert.Equal(-1, layout.IndexOf(160));
        Assert.Equal(-1, layout.IndexOf(-1));
        Assert.Equal(-1, new ChunkLayout([]).IndexOf(0));
    }
}
