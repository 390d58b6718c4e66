using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;
using Grpc.Core;

namespace FeitianK8s.EndToEnd.Tests;

[Collection(SharedClusterCollection.Name)]
public sealed class FencingTests : IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly SharedClusterFixture _fixture;

    public FencingTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    [Fact]
    public async Task A_second_writer_fences_the_first_and_the_file_stays_intact()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/fencing/two-writers.bin";
        await client.CreateAsync(path);
        var first = await client.OpenForAppendAsync(path);
        await first.AppendAsync(Streams.Block(3, 0, MiB));
        await first.AppendAsync(Streams.Block(3, 1, MiB));

        await using var second = await client.OpenForAppendAsync(path);
        Assert.True(second.Epoch > first.Epoch);
        Assert.Equal(2L * MiB, second.Length);

        await Assert.ThrowsAsync<FencedException>(() => first.AppendAsync(TestData.Random(1000, 5)));
        await Assert.ThrowsAsync<FencedException>(() => first.AppendAsync(TestData.Random(1000, 6)));
        await Assert.ThrowsAsync<FencedException>(() => first.FlushAsync());

        Assert.Equal(2L * MiB, await second.AppendAsync(Streams.Block(3, 2, MiB)));
        await second.CloseAsync();
        await first.DisposeAsync();

        Assert.Equal(3L * MiB, (await client.StatAsync(path))!.Length);
        Assert.Equal(Streams.Sha256OfBlocks(3, 3, MiB), (await Streams.ReadAllAsync(client, path)).Hash);
    }

    [Fact]
    public async Task Raw_appends_with_a_stale_epoch_a_wrong_offset_or_a_bad_checksum_are_refused_and_change_nothing()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/fencing/raw.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        var data = TestData.Random(100_000, 11);
        await appender.AppendAsync(data);
        await appender.FlushAsync();

        var chunk = (await client.StatAsync(path))!.Chunks.Single();
        Assert.False(chunk.Sealed);
        foreach (var replica in chunk.Replicas)
        {
            using var raw = new RawChunkServer(replica.Address, _fixture.Cluster.Launcher.ClientTls());
            var before = await raw.InfoAsync(chunk.Id);
            Assert.Equal((ulong)data.Length, before.Length);
            Assert.Equal(appender.Epoch, before.Epoch);
            var extra = TestData.Random(4096, 12);

            var stale = await Assert.ThrowsAsync<RpcException>(() => raw.AppendAsync(chunk.Id, before.Epoch - 1, before.Length, extra));
            Assert.Equal(StatusCode.FailedPrecondition, stale.StatusCode);
            Assert.Equal(ErrorReasons.StaleEpoch, FeitianStatus.ReasonOf(stale));

            foreach (var wrongOffset in new[] { before.Length + 7, 0UL, before.Length - 1 })
            {
                var wrong = await Assert.ThrowsAsync<RpcException>(() => raw.AppendAsync(chunk.Id, before.Epoch, wrongOffset, extra));
                Assert.Equal(StatusCode.OutOfRange, wrong.StatusCode);
                Assert.Equal(ErrorReasons.WrongOffset, FeitianStatus.ReasonOf(wrong));
            }

            var badCrc = await Assert.ThrowsAsync<RpcException>(() => raw.AppendAsync(chunk.Id, before.Epoch, before.Length, extra, crc: 0xDEADBEEF));
            Assert.Equal(StatusCode.DataLoss, badCrc.StatusCode);
            Assert.Equal(ErrorReasons.ChecksumMismatch, FeitianStatus.ReasonOf(badCrc));

            var after = await raw.InfoAsync(chunk.Id);
            Assert.Equal(before.Length, after.Length);
            Assert.Equal(before.Epoch, after.Epoch);
            Assert.False(after.Sealed);
            Assert.Equal(data, await raw.ReadAsync(chunk.Id, 0, (uint)data.Length));
        }

        // The legitimate writer was not disturbed.
        var more = TestData.Random(50_000, 13);
        Assert.Equal(data.Length, await appender.AppendAsync(more));
        await appender.CloseAsync();
        await using var reader = await client.OpenForReadAsync(path);
        var buffer = new byte[data.Length + more.Length];
        Assert.Equal(buffer.Length, await reader.ReadAsync(0, buffer));
        Assert.Equal(data.Concat(more).ToArray(), buffer);
    }

    [Fact]
    public async Task Taking_over_seals_an_abandoned_chunk_at_the_shortest_replica()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/fencing/takeover.bin";
        await client.CreateAsync(path);
        var abandoned = await client.OpenForAppendAsync(path);
        var acknowledged = TestData.Random(700_000, 14);
        await abandoned.AppendAsync(acknowledged);

        // One replica got further than the others (an append the writer never saw acknowledged).
        var chunk = (await client.StatAsync(path))!.Chunks[^1];
        Assert.False(chunk.Sealed);
        using (var raw = new RawChunkServer(chunk.Replicas[0].Address, _fixture.Cluster.Launcher.ClientTls()))
        {
            await raw.AppendAsync(chunk.Id, abandoned.Epoch, (ulong)acknowledged.Length, TestData.Random(3000, 15));
            Assert.Equal((ulong)acknowledged.Length + 3000, (await raw.InfoAsync(chunk.Id)).Length);
        }

        await using var successor = await client.OpenForAppendAsync(path);
        Assert.Equal(acknowledged.Length, successor.Length);
        foreach (var replica in chunk.Replicas)
        {
            using var raw = new RawChunkServer(replica.Address, _fixture.Cluster.Launcher.ClientTls());
            var info = await raw.InfoAsync(chunk.Id);
            Assert.True(info.Sealed);
            Assert.Equal((ulong)acknowledged.Length, info.Length);
            Assert.Equal(successor.Epoch, info.Epoch);
        }
        await Assert.ThrowsAsync<FencedException>(() => abandoned.AppendAsync(TestData.Random(10, 16)));
        await successor.CloseAsync();

        await using var reader = await client.OpenForReadAsync(path);
        Assert.Equal(acknowledged.Length, reader.Length);
        var buffer = new byte[acknowledged.Length + 100];
        Assert.Equal(acknowledged.Length, await reader.ReadAsync(0, buffer));
        Assert.Equal(acknowledged, buffer[..acknowledged.Length]);
    }
}
