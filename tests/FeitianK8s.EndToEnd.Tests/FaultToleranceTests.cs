using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>A cluster of its own (6 chunk servers on 3 racks) for tests that kill and restart servers; each test leaves it whole again.</summary>
public sealed class FaultClusterFixture : IAsyncLifetime
{
    public SwitchableTestOutput Output { get; } = new();

    public TestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(Output, LogLevel.Information), chunkServers: 6, racks: 3, chunkSize: 4 * 1024 * 1024);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

public sealed class FaultToleranceTests : IClassFixture<FaultClusterFixture>, IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly FaultClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public FaultToleranceTests(FaultClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    private TestCluster Cluster => _fixture.Cluster;

    [Fact]
    public async Task Killing_a_chunk_server_during_a_100_MiB_append_stream_loses_nothing()
    {
        // The writer runs on node-1, so chunk server 1 holds a replica of every chunk it writes.
        var client = Cluster.CreateClient(clientNode: "node-1");
        const string path = "/faults/kill-during-stream.bin";
        await client.CreateAsync(path);
        try
        {
            string written;
            IReadOnlyList<PanguChunk> chunksAtKill = [];
            await using (var appender = await client.OpenForAppendAsync(path))
            {
                written = await Streams.AppendAsync(appender, seed: 31, blocks: 100, blockSize: MiB, inFlight: 4, afterBlock: async i =>
                {
                    if (i == 30)
                    {
                        chunksAtKill = (await client.StatAsync(path))!.Chunks;
                        Cluster.Launcher.KillChunkServer(1);
                    }
                });
                Assert.Equal(100L * MiB, appender.Length);
                await appender.CloseAsync();
            }
            // The fault took effect: chunk server 1 is gone (process exited, port refuses).
            await ServerFaults.AssertServerIsDownAsync(Cluster.Launcher.ChunkServer(1));
            var stat = (await client.StatAsync(path))!;
            Assert.Equal(100L * MiB, stat.Length);
            var killedId = Cluster.Launcher.ChunkServer(1).Id;
            // At the moment of the kill, the chunks written so far had a replica on the victim.
            Assert.NotEmpty(chunksAtKill);
            Assert.All(chunksAtKill, c => Assert.Contains(c.Replicas, r => r.ChunkServerId == killedId));
            var late = stat.Chunks.Where(c => c.FileOffset >= 40L * MiB).ToArray();
            Assert.All(late, c => Assert.DoesNotContain(c.Replicas, r => r.ChunkServerId == killedId));
            // Read while the killed server is still down, by a client that tries it first (local node).
            var (read, length) = await Streams.ReadAllAsync(Cluster.CreateClient(clientNode: "node-1"), path);
            Assert.Equal(100L * MiB, length);
            Assert.Equal(written, read);
            await ServerFaults.AssertServerIsDownAsync(Cluster.Launcher.ChunkServer(1));
        }
        finally
        {
            await Cluster.Launcher.RestartChunkServerAsync(1);
            await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
        }
        // Reads still work with the restarted server (it may hold a stale copy of the chunk it was writing).
        Assert.Equal(Streams.Sha256OfBlocks(31, 100, MiB), (await Streams.ReadAllAsync(Cluster.CreateClient(clientNode: "node-1"), path)).Hash);
    }

    [Fact]
    public async Task A_chunk_server_killed_and_restarted_keeps_its_chunks()
    {
        var client = Cluster.CreateClient(clientNode: "node-2");
        const string path = "/faults/restart-chunkserver.bin";
        await client.CreateAsync(path);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 32, blocks: 10, blockSize: MiB);
            await appender.CloseAsync();
        }
        var server = Cluster.Launcher.ChunkServer(2);
        var held = (await client.StatAsync(path))!.Chunks.Where(c => c.Replicas.Any(r => r.ChunkServerId == server.Id)).ToArray();
        Assert.NotEmpty(held);

        var serverId = server.Id;
        Assert.All(held, c => Assert.Contains(c.Replicas, r => r.ChunkServerId == serverId && r.Node == "node-2"));

        Cluster.Launcher.KillChunkServer(2);
        await ServerFaults.AssertServerIsDownAsync(server);
        // While it is down, a reader on its node fails over to the other replicas.
        Assert.Equal(Streams.Sha256OfBlocks(32, 10, MiB), (await Streams.ReadAllAsync(Cluster.CreateClient(clientNode: "node-2"), path)).Hash);
        // Still down after the read: the read above really went around it.
        await ServerFaults.AssertServerIsDownAsync(server);
        await Cluster.Launcher.RestartChunkServerAsync(2);
        await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
        // The restarted process is the same chunk server (same id from its data directory), not a new one.
        Assert.Equal(serverId, server.Id);

        var expected = new byte[10 * MiB];
        for (var i = 0; i < 10; i++)
        {
            Streams.Block(32, i, MiB).CopyTo(expected, i * MiB);
        }
        using var raw = new RawChunkServer(server.GrpcAddress, Cluster.Launcher.ClientTls());
        foreach (var chunk in held)
        {
            var info = await raw.InfoAsync(chunk.Id);
            Assert.True(info.Sealed);
            Assert.Equal((ulong)chunk.Length, info.Length);
            var data = new List<byte>();
            for (long at = 0; at < chunk.Length; at += MiB)
            {
                data.AddRange(await raw.ReadAsync(chunk.Id, (ulong)at, (uint)Math.Min(MiB, chunk.Length - at)));
            }
            Assert.Equal(expected.AsSpan((int)chunk.FileOffset, (int)chunk.Length).ToArray(), data.ToArray());
        }
    }

    [Fact]
    public async Task A_master_killed_and_restarted_keeps_the_namespace_and_clients_carry_on()
    {
        var client = Cluster.CreateClient();
        const string path = "/faults/master/kept.bin";
        await client.CreateAsync(path);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 33, blocks: 9, blockSize: MiB);
            await appender.CloseAsync();
        }
        await client.CreateAsync("/faults/master/empty.bin");
        var before = (await client.StatAsync(path))!;

        // A writer that is mid-file when the master dies keeps its lease across the restart.
        const string live = "/faults/master/live.bin";
        await client.CreateAsync(live);
        var writer = await client.OpenForAppendAsync(live);
        await writer.AppendAsync(Streams.Block(39, 0, MiB));

        Cluster.Launcher.KillMaster();
        await ServerFaults.AssertServerIsDownAsync(Cluster.Launcher.Master);
        // While it is down its port stays reserved for this cluster: no other cluster on the machine picks it meanwhile.
        Assert.Equal(Cluster.Launcher.DataDir, FeitianK8s.Core.Common.ListenPorts.ReservedHolder(new Uri(Cluster.Launcher.Master.GrpcAddress).Port));
        // Appending inside the open chunk needs no master.
        Assert.Equal(MiB, await writer.AppendAsync(Streams.Block(39, 1, MiB)));
        // The master was down for the whole append above.
        await ServerFaults.AssertServerIsDownAsync(Cluster.Launcher.Master);
        await Cluster.Launcher.RestartMasterAsync();
        await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));

        // Crossing chunk boundaries needs the restarted master; the writer was not fenced.
        for (var i = 2; i < 8; i++)
        {
            Assert.Equal((long)i * MiB, await writer.AppendAsync(Streams.Block(39, i, MiB)));
        }
        await writer.CloseAsync();
        await writer.DisposeAsync();
        Assert.Equal(8L * MiB, (await client.StatAsync(live))!.Length);
        Assert.Equal(Streams.Sha256OfBlocks(39, 8, MiB), (await Streams.ReadAllAsync(client, live)).Hash);

        // The same client object keeps working: the master came back on its port.
        var after = (await client.StatAsync(path))!;
        Assert.Equal(before.Length, after.Length);
        Assert.Equal(before.Chunks.Select(c => (c.Id, c.Length, c.Sealed)), after.Chunks.Select(c => (c.Id, c.Length, c.Sealed)));
        Assert.Equal(before.Epoch, after.Epoch);
        Assert.NotNull(await client.StatAsync("/faults/master/empty.bin"));
        Assert.Equal(Streams.Sha256OfBlocks(33, 9, MiB), (await Streams.ReadAllAsync(client, path)).Hash);

        // A new lease after the restart is still greater than every earlier one.
        await using var next = await client.OpenForAppendAsync(path);
        Assert.True(next.Epoch > before.Epoch);
        await next.AppendAsync(TestData.Random(1000, 34));
        await next.CloseAsync();
        Assert.Equal(before.Length + 1000, (await client.StatAsync(path))!.Length);
    }

    [Fact]
    public async Task Taking_over_a_file_whose_open_chunk_lost_a_replica_seals_it_on_the_survivors()
    {
        var client = Cluster.CreateClient(clientNode: "node-4");
        const string path = "/faults/takeover-dead-replica.bin";
        await client.CreateAsync(path);
        var abandoned = await client.OpenForAppendAsync(path);
        var acknowledged = TestData.Random(900_000, 36);
        await abandoned.AppendAsync(acknowledged);
        var chunk = (await client.StatAsync(path))!.Chunks.Single();
        var killed = Cluster.Launcher.ChunkServer(4);
        var killedId = killed.Id;
        Assert.Equal(3, chunk.Replicas.Count);
        Assert.Single(chunk.Replicas, r => r.ChunkServerId == killedId && r.Node == "node-4");
        var survivors = chunk.Replicas.Where(r => r.ChunkServerId != killedId).ToArray();
        Assert.Equal(2, survivors.Length);
        try
        {
            Cluster.Launcher.KillChunkServer(4);
            await ServerFaults.AssertServerIsDownAsync(killed);
            await using var successor = await client.OpenForAppendAsync(path);
            Assert.Equal(acknowledged.Length, successor.Length);
            // The takeover ran while the dead replica was still dead.
            await ServerFaults.AssertServerIsDownAsync(killed);
            foreach (var replica in survivors)
            {
                using var raw = new RawChunkServer(replica.Address, Cluster.Launcher.ClientTls());
                var info = await raw.InfoAsync(chunk.Id);
                Assert.True(info.Sealed);
                Assert.Equal((ulong)acknowledged.Length, info.Length);
            }
            var more = TestData.Random(5000, 37);
            Assert.Equal(acknowledged.Length, await successor.AppendAsync(more));
            await successor.CloseAsync();
            var after = (await client.StatAsync(path))!;
            Assert.Equal(chunk.Id, after.Chunks[0].Id);
            Assert.True(after.Chunks[0].Sealed);
            Assert.Equal(acknowledged.Length, after.Chunks[0].Length);
            // Bytes written after the takeover went to chunks without the dead server.
            Assert.All(after.Chunks.Skip(1), c => Assert.DoesNotContain(c.Replicas, r => r.ChunkServerId == killedId));
            await Assert.ThrowsAsync<FencedException>(() => abandoned.AppendAsync(TestData.Random(10, 38)));
            Assert.Equal(TestData.Sha256([.. acknowledged, .. more]), (await Streams.ReadAllAsync(client, path)).Hash);
        }
        finally
        {
            await Cluster.Launcher.RestartChunkServerAsync(4);
            await Cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
        }
    }

    [Fact]
    public async Task With_only_two_racks_alive_writes_succeed_with_degraded_placement()
    {
        var launcher = Cluster.Launcher;
        var rack3 = launcher.ChunkServers.Select((s, i) => (Server: s, Index: i + 1)).Where(x => x.Server.Rack == "rack-3").Select(x => x.Index).ToArray();
        Assert.Equal([3, 6], rack3);
        var client = Cluster.CreateClient();
        const string path = "/faults/two-racks.bin";
        try
        {
            foreach (var i in rack3)
            {
                launcher.KillChunkServer(i);
            }
            foreach (var i in rack3)
            {
                await ServerFaults.AssertServerIsDownAsync(launcher.ChunkServer(i));
            }
            await launcher.WaitForChunkServersDeadAsync(rack3, TimeSpan.FromSeconds(90));

            await client.CreateAsync(path);
            await using (var appender = await client.OpenForAppendAsync(path))
            {
                await Streams.AppendAsync(appender, seed: 35, blocks: 10, blockSize: MiB);
                await appender.CloseAsync();
            }
            var stat = (await client.StatAsync(path))!;
            Assert.Equal(10L * MiB, stat.Length);
            foreach (var chunk in stat.Chunks)
            {
                _output.WriteLine($"chunk {chunk.Id}: degraded {chunk.PlacementDegraded}, {string.Join(", ", chunk.Replicas.Select(r => $"{r.Node}/{r.Rack}"))}");
                Assert.True(chunk.PlacementDegraded);
                Assert.DoesNotContain(chunk.Replicas, r => r.Rack == "rack-3");
                Assert.Equal(chunk.Replicas.Count, chunk.Replicas.Select(r => r.Node).Distinct().Count());
                Assert.True(chunk.Replicas.Count >= 2);
            }
            Assert.True((await client.GetClusterStatusAsync()).DegradedChunks > 0);
            Assert.Equal(Streams.Sha256OfBlocks(35, 10, MiB), (await Streams.ReadAllAsync(client, path)).Hash);
        }
        finally
        {
            foreach (var i in rack3)
            {
                await launcher.RestartChunkServerAsync(i);
            }
            await launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
        }
    }
}
