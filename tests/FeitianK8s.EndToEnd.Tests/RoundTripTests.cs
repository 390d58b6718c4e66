using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

[Collection(SharedClusterCollection.Name)]
public sealed class RoundTripTests : IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly SharedClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public RoundTripTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    [Fact]
    public async Task File_of_200_MiB_reads_back_with_the_same_sha256()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/roundtrip/big.bin";
        await client.CreateAsync(path);
        string written;
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            written = await Streams.AppendAsync(appender, seed: 1, blocks: 200, blockSize: MiB, inFlight: 8);
            Assert.Equal(200L * MiB, appender.Length);
            await appender.CloseAsync();
        }
        var stat = await client.StatAsync(path);
        Assert.NotNull(stat);
        Assert.Equal(200L * MiB, stat.Length);
        Assert.True(stat.Chunks.Count >= 50, $"expected at least 50 chunks of 4 MiB, got {stat.Chunks.Count}");
        var (read, length) = await Streams.ReadAllAsync(client, path);
        Assert.Equal(200L * MiB, length);
        Assert.Equal(written, read);
        _output.WriteLine($"200 MiB in {stat.Chunks.Count} chunks, sha256 {read}");
    }

    [Fact]
    public async Task Concurrent_appends_each_get_their_own_offset_and_read_back()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/roundtrip/concurrent.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        var pieces = Enumerable.Range(0, 64).Select(i => TestData.Random(100_000 + i * 997, 1000 + i)).ToArray();
        var offsets = await Task.WhenAll(pieces.Select(p => appender.AppendAsync(p)));

        var total = pieces.Sum(p => (long)p.Length);
        Assert.Equal(total, appender.Length);
        var ranges = offsets.Zip(pieces, (o, p) => (Start: o, End: o + p.Length)).OrderBy(r => r.Start).ToArray();
        Assert.Equal(0, ranges[0].Start);
        for (var i = 1; i < ranges.Length; i++)
        {
            Assert.Equal(ranges[i - 1].End, ranges[i].Start);
        }

        // Read back through the appender (open chunk included), then through a reader after close.
        for (var i = 0; i < pieces.Length; i++)
        {
            var buffer = new byte[pieces[i].Length];
            Assert.Equal(buffer.Length, await appender.ReadAsync(offsets[i], buffer));
            Assert.Equal(pieces[i], buffer);
        }
        await appender.CloseAsync();
        await using var reader = await client.OpenForReadAsync(path);
        Assert.Equal(total, reader.Length);
        for (var i = 0; i < pieces.Length; i++)
        {
            var buffer = new byte[pieces[i].Length];
            Assert.Equal(buffer.Length, await reader.ReadAsync(offsets[i], buffer));
            Assert.Equal(pieces[i], buffer);
        }
    }

    [Fact]
    public async Task Every_chunk_has_three_replicas_on_three_racks_and_one_on_the_writers_node()
    {
        var client = _fixture.Cluster.CreateClient(clientNode: "node-2");
        const string path = "/placement/spread.bin";
        await client.CreateAsync(path);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 2, blocks: 22, blockSize: MiB);
            await appender.CloseAsync();
        }
        var stat = await client.StatAsync(path);
        Assert.NotNull(stat);
        Assert.True(stat.Chunks.Count >= 6, $"expected at least 6 chunks, got {stat.Chunks.Count}");
        foreach (var chunk in stat.Chunks)
        {
            _output.WriteLine($"chunk {chunk.Id} @{chunk.FileOffset} len {chunk.Length}: {string.Join(", ", chunk.Replicas.Select(r => $"{r.Node}/{r.Rack}"))}");
            Assert.True(chunk.Sealed);
            Assert.Equal(3, chunk.Replicas.Count);
            Assert.Equal(3, chunk.Replicas.Select(r => r.Rack).Distinct().Count());
            Assert.Equal(3, chunk.Replicas.Select(r => r.Node).Distinct().Count());
            Assert.Equal(3, chunk.Replicas.Select(r => r.ChunkServerId).Distinct().Count());
            Assert.False(chunk.PlacementDegraded);
            Assert.Contains(chunk.Replicas, r => r.Node == "node-2");
        }
        Assert.Equal(Streams.Sha256OfBlocks(2, 22, MiB), (await Streams.ReadAllAsync(client, path)).Hash);
    }

    [Fact]
    public async Task Flush_records_the_length_at_the_master_and_readers_see_the_open_chunk()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/roundtrip/flush.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        var first = TestData.Random(300_000, 7);
        Assert.Equal(0, await appender.AppendAsync(first, durable: true));
        await appender.FlushAsync();
        var stat = await client.StatAsync(path);
        Assert.Equal(first.Length, stat!.Length);

        // Not flushed: the master still has the old length, a reader asks a replica.
        var second = TestData.Random(200_000, 8);
        Assert.Equal(first.Length, await appender.AppendAsync(second));
        Assert.Equal(first.Length, (await client.StatAsync(path))!.Length);
        await using var reader = await client.OpenForReadAsync(path);
        Assert.Equal(first.Length + second.Length, reader.Length);
        var buffer = new byte[first.Length + second.Length];
        Assert.Equal(buffer.Length, await reader.ReadAsync(0, buffer));
        Assert.Equal(first.Concat(second).ToArray(), buffer);
        // The reader learned the longer length from a replica, not from the master, which still has the flushed one.
        Assert.Equal(first.Length, (await client.StatAsync(path))!.Length);

        await appender.CloseAsync();
        await appender.CloseAsync();
        stat = await client.StatAsync(path);
        Assert.Equal(first.Length + second.Length, stat!.Length);
        Assert.All(stat.Chunks, c => Assert.True(c.Sealed));
    }

    [Fact]
    public async Task Namespace_operations_work_end_to_end()
    {
        var client = _fixture.Cluster.CreateClient();
        await client.CreateAsync("/ns/dir/a.bin");
        await client.CreateAsync("/ns/dir/b.bin");
        await using (var appender = await client.OpenForAppendAsync("/ns/dir/a.bin"))
        {
            await appender.AppendAsync(TestData.Random(5000, 9));
            await appender.CloseAsync();
        }
        var entries = await client.ListAsync("/ns/dir");
        Assert.Equal(["/ns/dir/a.bin", "/ns/dir/b.bin"], entries.Select(e => e.Path).OrderBy(p => p, StringComparer.Ordinal).ToArray());
        Assert.Equal(5000, entries.Single(e => e.Path == "/ns/dir/a.bin").Length);
        await client.RenameAsync("/ns/dir/a.bin", "/ns/dir/c.bin");
        Assert.Null(await client.StatAsync("/ns/dir/a.bin"));
        Assert.Equal(5000, (await client.StatAsync("/ns/dir/c.bin"))!.Length);
        await client.DeleteAsync("/ns/dir/c.bin");
        Assert.Null(await client.StatAsync("/ns/dir/c.bin"));
        var recursive = await client.ListAsync("/ns", recursive: true);
        Assert.Contains(recursive, e => e.Path == "/ns/dir/b.bin");
        Assert.DoesNotContain(recursive, e => e.Path == "/ns/dir/c.bin");
    }
}
