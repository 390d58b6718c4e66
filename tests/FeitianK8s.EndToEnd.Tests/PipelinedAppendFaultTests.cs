using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Pipelined appends against real chunk-server processes: a replica killed while eight appends are in
/// flight. The writer must acknowledge nothing a replica lacks, seal the chunk at the prefix every
/// replica acknowledged, and send the rest again in order: nothing lost, nothing reordered.
/// </summary>
public sealed class PipelinedAppendFaultTests : IClassFixture<FaultClusterFixture>, IDisposable
{
    private const int PieceBytes = 64 * 1024;
    private readonly FaultClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public PipelinedAppendFaultTests(FaultClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    private TestCluster Cluster => _fixture.Cluster;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_replica_killed_with_8_appends_in_flight_keeps_the_acknowledged_prefix_and_seals_at_the_agreed_length(bool appendStreams)
    {
        // With streams the killed replica's AppendStream breaks under eight frames; without, eight unary calls fail.
        // The writer runs on node-1, so chunk server 1 holds a replica of the chunk it writes; 64 KiB per
        // call and a window of 8 keep eight appends in flight when the kill lands.
        var client = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [Cluster.Launcher.MasterAddress],
            Tls = Cluster.Launcher.ClientTls(),
            ClientNode = "node-1",
            MaxRpcDataBytes = PieceBytes,
            MaxAppendsInFlight = 8,
            AppendStreams = appendStreams,
        }, Cluster.LoggerFactory);
        var path = $"/pipeline/replica-killed-{(appendStreams ? "stream" : "unary")}.bin";
        await client.CreateAsync(path);
        var appends = Enumerable.Range(0, 48).Select(i => TestData.Random(PieceBytes, 7000 + i)).ToArray();
        try
        {
            await using var appender = await client.OpenForAppendAsync(path);
            var tasks = new List<Task<long>>();
            for (var i = 0; i < 16; i++)
            {
                tasks.Add(appender.AppendAsync(appends[i]));
            }
            var acknowledgedBeforeKill = await tasks[0] + PieceBytes;
            var chunkAtKill = (await client.StatAsync(path))!.Chunks[0];
            Assert.Contains(chunkAtKill.Replicas, r => r.ChunkServerId == Cluster.Launcher.ChunkServer(1).Id);
            Cluster.Launcher.KillChunkServer(1);
            for (var i = 16; i < appends.Length; i++)
            {
                tasks.Add(appender.AppendAsync(appends[i]));
            }
            var offsets = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
            _output.WriteLine($"{acknowledgedBeforeKill} bytes acknowledged when chunk server 1 was killed");

            // Every append acknowledged, at the offset it was admitted at: nothing reordered.
            Assert.Equal(Enumerable.Range(0, appends.Length).Select(i => (long)i * PieceBytes), offsets);
            Assert.Equal((long)appends.Length * PieceBytes, appender.Length);
            await appender.CloseAsync();

            var stat = (await client.StatAsync(path))!;
            var first = stat.Chunks[0];
            Assert.Equal(chunkAtKill.Id, first.Id);
            Assert.True(first.Sealed);
            Assert.True(first.Length >= acknowledgedBeforeKill, $"chunk sealed at {first.Length}, below the {acknowledgedBeforeKill} bytes acknowledged before the kill");
            // Every surviving replica is sealed at the same, agreed length.
            foreach (var replica in first.Replicas.Where(r => r.ChunkServerId != Cluster.Launcher.ChunkServer(1).Id))
            {
                using var raw = new RawChunkServer(replica.Address, Cluster.Launcher.ClientTls());
                var info = await raw.InfoAsync(first.Id);
                Assert.True(info.Sealed, $"replica {replica.ChunkServerId} of chunk {first.Id} is not sealed");
                Assert.Equal((ulong)first.Length, info.Length);
            }
            Assert.All(stat.Chunks.Skip(1).Where(c => c.Length > 0),
                c => Assert.DoesNotContain(c.Replicas, r => r.ChunkServerId == Cluster.Launcher.ChunkServer(1).Id));
            Assert.Equal(TestData.Sha256(appends.SelectMany(a => a).ToArray()), (await Streams.ReadAllAsync(client, path)).Hash);
        }
        finally
        {
            await Cluster.Launcher.RestartChunkServerAsync(1);
            await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
            client.Dispose();
        }
    }

    [Fact]
    public async Task A_replica_frozen_with_SIGSTOP_times_out_its_stream_and_the_chunk_is_sealed_at_the_acknowledged_prefix()
    {
        // Frames to a frozen replica are never answered: after the chunk-server timeout the stream is given up like a
        // failed append (seal at the acknowledged prefix on the replicas that answer, the rest sent to a new chunk).
        var client = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [Cluster.Launcher.MasterAddress],
            Tls = Cluster.Launcher.ClientTls(),
            ClientNode = "node-1",
            MaxRpcDataBytes = PieceBytes,
            MaxAppendsInFlight = 8,
            ChunkServerTimeout = TimeSpan.FromSeconds(3),
        }, Cluster.LoggerFactory);
        const string path = "/pipeline/replica-frozen.bin";
        await client.CreateAsync(path);
        var appends = Enumerable.Range(0, 32).Select(i => TestData.Random(PieceBytes, 11000 + i)).ToArray();
        var frozen = Cluster.Launcher.ChunkServer(1);
        var pid = frozen.Process!.Pid;
        try
        {
            await using var appender = await client.OpenForAppendAsync(path);
            var tasks = new List<Task<long>>();
            for (var i = 0; i < 8; i++)
            {
                tasks.Add(appender.AppendAsync(appends[i]));
            }
            var acknowledgedBeforeFreeze = await tasks[0] + PieceBytes;
            var chunkAtFreeze = (await client.StatAsync(path))!.Chunks[0];
            Assert.Contains(chunkAtFreeze.Replicas, r => r.ChunkServerId == frozen.Id);
            await SignalAsync("STOP", pid);
            for (var i = 8; i < appends.Length; i++)
            {
                tasks.Add(appender.AppendAsync(appends[i]));
            }
            var offsets = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromMinutes(2));
            Assert.Equal(Enumerable.Range(0, appends.Length).Select(i => (long)i * PieceBytes), offsets);
            await appender.CloseAsync();

            var stat = (await client.StatAsync(path))!;
            var first = stat.Chunks[0];
            Assert.Equal(chunkAtFreeze.Id, first.Id);
            Assert.True(first.Sealed);
            Assert.True(first.Length >= acknowledgedBeforeFreeze, $"chunk sealed at {first.Length}, below the {acknowledgedBeforeFreeze} bytes acknowledged before the freeze");
            foreach (var replica in first.Replicas.Where(r => r.ChunkServerId != frozen.Id))
            {
                using var raw = new RawChunkServer(replica.Address, Cluster.Launcher.ClientTls());
                var info = await raw.InfoAsync(first.Id);
                Assert.True(info.Sealed, $"replica {replica.ChunkServerId} of chunk {first.Id} is not sealed");
                Assert.Equal((ulong)first.Length, info.Length);
            }
            Assert.Equal(TestData.Sha256(appends.SelectMany(a => a).ToArray()), (await Streams.ReadAllAsync(client, path)).Hash);
        }
        finally
        {
            await SignalAsync("CONT", pid);
            await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
            client.Dispose();
        }
    }

    private async Task SignalAsync(string signal, int pid)
    {
        var result = await ExternalTool.RunAsync(_output, "kill", [$"-{signal}", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));
        Assert.True(result.Succeeded, $"kill -{signal} {pid} failed: {result.StandardError}");
    }

    [Fact]
    public async Task A_takeover_in_the_middle_of_a_pipeline_fences_the_old_writer_and_keeps_what_it_acknowledged()
    {
        var options = new PanguClientOptions
        {
            MasterAddresses = [Cluster.Launcher.MasterAddress],
            Tls = Cluster.Launcher.ClientTls(),
            ClientNode = "node-2",
            MaxRpcDataBytes = PieceBytes,
            MaxAppendsInFlight = 8,
        };
        var oldClient = new PanguClient(options, Cluster.LoggerFactory);
        var newClient = new PanguClient(options, Cluster.LoggerFactory);
        const string path = "/pipeline/takeover.bin";
        await oldClient.CreateAsync(path);
        var appends = Enumerable.Range(0, 32).Select(i => TestData.Random(PieceBytes, 9000 + i)).ToArray();
        try
        {
            var oldWriter = await oldClient.OpenForAppendAsync(path);
            var tasks = appends.Select(a => oldWriter.AppendAsync(a)).ToList();
            await tasks[0];
            // A new writer takes the lease (higher epoch) while the old one's pipeline is full.
            await using var newWriter = await newClient.OpenForAppendAsync(path);
            var outcomes = await Task.WhenAll(tasks.Select(async t =>
            {
                try
                {
                    return (Offset: await t, Fenced: false);
                }
                catch (FencedException)
                {
                    return (Offset: -1L, Fenced: true);
                }
            })).WaitAsync(TimeSpan.FromMinutes(2));
            // The acknowledged appends are a prefix in admission order; everything after the first refusal is refused too.
            var acknowledged = outcomes.TakeWhile(o => !o.Fenced).Count();
            Assert.All(outcomes.Skip(acknowledged), o => Assert.True(o.Fenced));
            Assert.Equal(Enumerable.Range(0, acknowledged).Select(i => (long)i * PieceBytes), outcomes.Take(acknowledged).Select(o => o.Offset));
            _output.WriteLine($"{acknowledged} of {appends.Length} appends acknowledged before the takeover");

            var length = newWriter.Length;
            Assert.True(length >= (long)acknowledged * PieceBytes, $"the takeover sealed at {length}, below the {acknowledged * PieceBytes} acknowledged bytes");
            Assert.Equal(0, length % PieceBytes);
            Assert.True(length <= (long)appends.Length * PieceBytes);
            await Assert.ThrowsAsync<FencedException>(() => oldWriter.AppendAsync(TestData.Random(10, 1)));
            var tail = TestData.Random(1000, 2);
            Assert.Equal(length, await newWriter.AppendAsync(tail));
            await newWriter.CloseAsync();
            var expected = appends.Take((int)(length / PieceBytes)).SelectMany(a => a).Concat(tail).ToArray();
            Assert.Equal(TestData.Sha256(expected), (await Streams.ReadAllAsync(newClient, path)).Hash);
        }
        finally
        {
            oldClient.Dispose();
            newClient.Dispose();
        }
    }
}
