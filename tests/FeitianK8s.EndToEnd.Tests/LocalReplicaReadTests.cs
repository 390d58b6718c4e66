using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>Reads of a replica on the client's node straight from the chunk server's files (<see cref="LocalReplicaReader"/>).</summary>
[Collection(SharedClusterCollection.Name)]
public sealed class LocalReplicaReadTests : IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly SharedClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public LocalReplicaReadTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    private PanguClient LocalClient(PanguReplica replica)
    {
        var server = _fixture.Cluster.Launcher.ChunkServers.Single(s => s.Id == replica.ChunkServerId);
        return new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [_fixture.Cluster.Launcher.MasterAddress],
            Tls = _fixture.Cluster.Launcher.ClientTls(),
            ClientNode = server.Node,
            LocalChunkServerDataDirs = new Dictionary<string, string> { [server.GrpcAddress] = server.DataDir },
        }, _fixture.Cluster.LoggerFactory);
    }

    [Fact]
    public async Task Sealed_and_open_chunks_read_from_local_files_match_what_was_written()
    {
        var cluster = _fixture.Cluster;
        var writer = cluster.CreateClient();
        const string path = "/local-read/sealed.bin";
        await writer.CreateAsync(path);
        await using (var appender = await writer.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 11, blocks: 6, blockSize: MiB);
            await appender.CloseAsync();
        }
        var chunk = (await writer.StatAsync(path))!.Chunks[0];
        using var local = LocalClient(chunk.Replicas[0]);

        Assert.Equal(Streams.Sha256OfBlocks(11, 6, MiB), (await Streams.ReadAllAsync(local, path, bufferSize: 4096 + 17)).Hash);
        _output.WriteLine($"sealed: {local.LocalReplicas!.Served} local reads, {local.LocalReplicas.Declined} declined");
        Assert.True(local.LocalReplicas.Served > 0, "no read was served from the local replica");

        // An open chunk: whole acknowledged blocks come from the files, the partial tail through the chunk server.
        const string openPath = "/local-read/open.bin";
        await local.CreateAsync(openPath);
        await using var open = await local.OpenForAppendAsync(openPath);
        var data = TestData.Random(MiB + 5000, 99);
        await open.AppendAsync(data);
        var servedBefore = local.LocalReplicas.Served;
        var back = new byte[data.Length];
        var done = 0;
        while (done < back.Length)
        {
            var n = await open.ReadAsync(done, back.AsMemory(done, Math.Min(4096 * 3 + 100, back.Length - done)));
            Assert.True(n > 0, $"open chunk read returned {n} at {done}");
            done += n;
        }
        Assert.Equal(data, back);
        _output.WriteLine($"open: {local.LocalReplicas.Served - servedBefore} local reads");
        Assert.True(local.LocalReplicas.Served > servedBefore, "no read of the open chunk was served locally");
    }

    /// <summary>
    /// The reader keeps the CRC entries of whole acknowledged blocks in memory and extends them as the chunk grows:
    /// reads after every append, of old and of newly whole blocks, at unaligned offsets, must all match.
    /// </summary>
    [Fact]
    public async Task Reads_of_an_open_chunk_growing_between_them_match_what_was_written()
    {
        var cluster = _fixture.Cluster;
        var writer = cluster.CreateClient();
        // A file of the writer only picks a chunk server; the growing file is the local client's, so the
        // master places a replica of its chunk on that server's node.
        const string picker = "/local-read/growing-picker.bin";
        await writer.CreateAsync(picker);
        await using (var appender = await writer.OpenForAppendAsync(picker))
        {
            await appender.AppendAsync(TestData.Random(1, 5));
            await appender.CloseAsync();
        }
        using var local = LocalClient((await writer.StatAsync(picker))!.Chunks[0].Replicas[0]);
        const string path = "/local-read/growing.bin";
        await local.CreateAsync(path);
        await using var open = await local.OpenForAppendAsync(path);
        var written = new List<byte>();
        var random = new Random(7);
        for (var round = 0; round < 24; round++)
        {
            var piece = TestData.Random(37 * 1024 + 123 * round, 100 + round);
            await open.AppendAsync(piece);
            written.AddRange(piece);
            for (var i = 0; i < 6; i++)
            {
                // Half the reads end in the newest bytes, half anywhere before them.
                var length = random.Next(1, 3 * 4096 + 500);
                var end = i % 2 == 0 ? written.Count : random.Next(length, written.Count + 1);
                var offset = Math.Max(0, end - length);
                var back = new byte[end - offset];
                var done = 0;
                while (done < back.Length)
                {
                    var n = await open.ReadAsync(offset + done, back.AsMemory(done));
                    Assert.True(n > 0, $"read returned {n} at {offset + done} of {written.Count}");
                    done += n;
                }
                Assert.True(written.GetRange(offset, back.Length).SequenceEqual(back), $"round {round}: bytes at {offset}+{back.Length} differ");
            }
        }
        _output.WriteLine($"growing: {local.LocalReplicas!.Served} local reads, {local.LocalReplicas.Declined} declined");
        Assert.True(local.LocalReplicas.Served > 24, "reads of whole acknowledged blocks were not served from the local replica");
    }

    /// <summary>
    /// The writer asks every replica but the one it reads first to drop durable appended bytes from the page
    /// cache: once the file is closed (its chunks sealed), only that replica's data stays cached, and every
    /// replica still serves exactly what was written (the others from disk).
    /// </summary>
    [Fact]
    public async Task Only_the_replica_the_writer_reads_keeps_appended_bytes_cached_and_every_replica_reads_back_intact()
    {
        var cluster = _fixture.Cluster;
        const string clientNode = "drop-behind-writer";
        var writer = cluster.CreateClient(clientNode);
        const string path = "/local-read/drop-behind.bin";
        await writer.CreateAsync(path);
        await using (var appender = await writer.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 13, blocks: 3, blockSize: MiB);
            await appender.CloseAsync();
        }
        var page = Environment.SystemPageSize;
        var chunks = (await writer.StatAsync(path))!.Chunks;
        foreach (var chunk in chunks)
        {
            Assert.Equal(3, chunk.Replicas.Count);
            var kept = ChunkReader.FirstToRead(chunk.Replicas, clientNode);
            for (var i = 0; i < chunk.Replicas.Count; i++)
            {
                var server = cluster.Launcher.ChunkServers.Single(s => s.Id == chunk.Replicas[i].ChunkServerId);
                var file = DiskFaults.FindChunkDataFile(server.DataDir, chunk.Id);
                Assert.NotNull(file);
                var resident = await PageCacheProbe.ResidentBytesAsync(_output, file);
                _output.WriteLine($"chunk {chunk.Id} replica {i} on {server.Id}: {resident} of {chunk.Length} bytes cached");
                if (i == kept)
                {
                    Assert.True(resident >= chunk.Length - page, $"the replica the writer reads has only {resident} of {chunk.Length} bytes cached");
                }
                else
                {
                    Assert.True(resident <= page, $"replica {i}, which the writer does not read, still has {resident} of {chunk.Length} bytes cached");
                }
            }
        }
        foreach (var replica in chunks[0].Replicas)
        {
            using var local = LocalClient(replica);
            Assert.Equal(Streams.Sha256OfBlocks(13, 3, MiB), (await Streams.ReadAllAsync(local, path, bufferSize: MiB)).Hash);
            Assert.True(local.LocalReplicas!.Served > 0, $"no read was served from the files of {replica.ChunkServerId}");
        }
    }

    [Fact]
    public async Task A_corrupt_local_replica_is_not_served_and_the_read_fails_over_and_reports_it()
    {
        var cluster = _fixture.Cluster;
        var writer = cluster.CreateClient();
        const string path = "/local-read/corrupt.bin";
        await writer.CreateAsync(path);
        await using (var appender = await writer.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 12, blocks: 2, blockSize: MiB);
            await appender.CloseAsync();
        }
        var chunk = (await writer.StatAsync(path))!.Chunks[0];
        var victim = chunk.Replicas[0];
        var server = cluster.Launcher.ChunkServers.Single(s => s.Id == victim.ChunkServerId);
        var file = DiskFaults.FindChunkDataFile(server.DataDir, chunk.Id);
        Assert.NotNull(file);
        const long offset = 200_003;
        DiskFaults.FlipByte(file, offset);

        using var local = LocalClient(victim);
        await using var reader = await local.OpenForReadAsync(path);
        var buffer = new byte[4096];
        Assert.Equal(buffer.Length, await reader.ReadAsync(offset - 10, buffer));
        Assert.Equal(Streams.Block(12, 0, MiB).AsSpan((int)offset - 10, buffer.Length).ToArray(), buffer);
        Assert.True(local.LocalReplicas!.Declined > 0, "the corrupt local block was not declined");

        var deadline = DateTime.UtcNow.AddSeconds(30);
        // Reported: flagged bad, or already replaced by re-replication (the victim no longer holds a replica).
        static bool Reported(IReadOnlyList<PanguReplica> replicas, string victim) =>
            replicas.Any(r => r.ChunkServerId == victim && r.Bad) || replicas.All(r => r.ChunkServerId != victim && !r.Bad);
        while (!Reported((await local.StatAsync(path))!.Chunks[0].Replicas, victim.ChunkServerId))
        {
            Assert.True(DateTime.UtcNow < deadline, "the corrupt replica was never reported to the master");
            await Task.Delay(500);
        }
    }

    [Fact]
    public async Task Files_of_a_deleted_chunk_are_closed_so_its_space_is_freed()
    {
        var cluster = _fixture.Cluster;
        var writer = cluster.CreateClient();
        const string path = "/local-read/deleted.bin";
        await writer.CreateAsync(path);
        await using (var appender = await writer.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 13, blocks: 1, blockSize: MiB);
            await appender.CloseAsync();
        }
        var chunk = (await writer.StatAsync(path))!.Chunks[0];
        var server = cluster.Launcher.ChunkServers.Single(s => s.Id == chunk.Replicas[0].ChunkServerId);
        using var local = LocalClient(chunk.Replicas[0]);
        Assert.Equal(Streams.Sha256OfBlocks(13, 1, MiB), (await Streams.ReadAllAsync(local, path)).Hash);
        Assert.Equal(1, local.LocalReplicas!.OpenChunks);

        await writer.DeleteAsync(path);
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (DiskFaults.FindChunkDataFile(server.DataDir, chunk.Id) is not null || local.LocalReplicas.OpenChunks > 0)
        {
            Assert.True(DateTime.UtcNow < deadline,
                $"chunk {chunk.Id} still on disk or open: {local.LocalReplicas.OpenChunks} open chunks");
            await Task.Delay(500);
        }
    }
}
