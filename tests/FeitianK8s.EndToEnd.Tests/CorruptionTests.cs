using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

[Collection(SharedClusterCollection.Name)]
public sealed class CorruptionTests : IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly SharedClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public CorruptionTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    [Fact]
    public async Task A_flipped_byte_in_a_replica_is_detected_read_around_and_reported()
    {
        var cluster = _fixture.Cluster;
        var writer = cluster.CreateClient();
        const string path = "/corruption/flip.bin";
        await writer.CreateAsync(path);
        await using (var appender = await writer.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 4, blocks: 6, blockSize: MiB);
            await appender.CloseAsync();
        }
        var chunk = (await writer.StatAsync(path))!.Chunks[0];
        var victim = chunk.Replicas[0];
        var server = cluster.Launcher.ChunkServers.Single(s => s.Id == victim.ChunkServerId);
        var file = DiskFaults.FindChunkDataFile(server.DataDir, chunk.Id);
        Assert.NotNull(file);
        const long offset = 123_457;
        var original = DiskFaults.FlipByte(file, offset);
        // The fault took effect: the byte on disk now differs.
        Assert.Equal((byte)~original, DiskFaults.ReadByte(file, offset));
        _output.WriteLine($"flipped byte {offset} of {file} (chunk {chunk.Id} on {victim.ChunkServerId}/{victim.Node})");

        // A reader on the victim's node tries the corrupt replica first.
        var reader = cluster.CreateClient(clientNode: victim.Node);
        Assert.Equal(Streams.Sha256OfBlocks(4, 6, MiB), (await Streams.ReadAllAsync(reader, path)).Hash);

        // Wait for THIS replica (this chunk on this chunk server) to be reported bad: the cluster-wide
        // bad-replica counter can already be non-zero from another test sharing the cluster.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var replicas = (await reader.StatAsync(path))!.Chunks.Single(c => c.Id == chunk.Id).Replicas;
            var flagged = replicas.Any(r => r.ChunkServerId == victim.ChunkServerId && r.Bad);
            // Once reported, the re-replication scheduler may already have replaced this very replica.
            var replaced = replicas.All(r => r.ChunkServerId != victim.ChunkServerId && !r.Bad) && replicas.Count == 3;
            _output.WriteLine($"chunk {chunk.Id}: replica on {victim.ChunkServerId} flagged bad: {flagged}, replaced: {replaced}");
            if (flagged || replaced)
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, $"the corrupt replica of chunk {chunk.Id} on {victim.ChunkServerId} was never reported to the master");
            await Task.Delay(500);
        }
        // Only the corrupted replica is flagged; the other replicas of the chunk stay good.
        var replicasNow = (await reader.StatAsync(path))!.Chunks.Single(c => c.Id == chunk.Id).Replicas;
        Assert.All(replicasNow.Where(r => r.ChunkServerId != victim.ChunkServerId), r => Assert.False(r.Bad, $"replica on {r.ChunkServerId} flagged bad without a fault"));

        // The same byte range still reads correctly, now without touching the bad replica first.
        var expected = Streams.Block(4, 0, MiB);
        var buffer = new byte[4096];
        await using var again = await reader.OpenForReadAsync(path);
        Assert.Equal(buffer.Length, await again.ReadAsync(offset - 100, buffer));
        Assert.Equal(expected.AsSpan((int)offset - 100, buffer.Length).ToArray(), buffer);
    }
}
