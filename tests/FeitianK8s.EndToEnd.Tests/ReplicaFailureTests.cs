using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

[Collection(SharedClusterCollection.Name)]
public sealed class ReplicaFailureTests : IDisposable
{
    private readonly SharedClusterFixture _fixture;

    public ReplicaFailureTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    [Fact]
    public async Task A_replica_that_refuses_an_append_is_sealed_out_and_the_data_goes_to_a_new_chunk()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/replica-failure/wrong-offset.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        var first = TestData.Random(100_000, 41);
        await appender.AppendAsync(first);

        // Make one replica diverge: it now expects a different offset than the writer sends.
        var chunk = (await client.StatAsync(path))!.Chunks.Single();
        var diverged = chunk.Replicas[0];
        using (var raw = new RawChunkServer(diverged.Address, _fixture.Cluster.Launcher.ClientTls()))
        {
            await raw.AppendAsync(chunk.Id, appender.Epoch, (ulong)first.Length, TestData.Random(10, 42));
        }

        // The caller sees no error: the chunk is sealed at the acknowledged length and the data lands elsewhere.
        var second = TestData.Random(200_000, 43);
        Assert.Equal(first.Length, await appender.AppendAsync(second));
        Assert.Equal(first.Length + second.Length, appender.Length);
        await appender.CloseAsync();

        var stat = (await client.StatAsync(path))!;
        Assert.Equal(first.Length + second.Length, stat.Length);
        Assert.Equal(chunk.Id, stat.Chunks[0].Id);
        Assert.True(stat.Chunks[0].Sealed);
        Assert.Equal(first.Length, stat.Chunks[0].Length);
        Assert.All(stat.Chunks.Skip(1).Where(c => c.Length > 0), c => Assert.DoesNotContain(c.Replicas, r => r.ChunkServerId == diverged.ChunkServerId));
        foreach (var replica in chunk.Replicas)
        {
            using var raw = new RawChunkServer(replica.Address, _fixture.Cluster.Launcher.ClientTls());
            var info = await raw.InfoAsync(chunk.Id);
            Assert.True(info.Sealed);
            Assert.Equal((ulong)first.Length, info.Length);
        }
        Assert.Equal(TestData.Sha256([.. first, .. second]), (await Streams.ReadAllAsync(client, path)).Hash);
    }
}
