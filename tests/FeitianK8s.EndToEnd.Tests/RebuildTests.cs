using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Self-healing with real master and chunk-server processes on loopback (6 chunk servers on 3 racks, 4 MiB
/// chunks, --dead-after 5 s): lost, corrupt and stale replicas are rebuilt by the master's re-replication
/// scheduler, and every replica ends byte-identical to what was written. Each test runs its own cluster.
/// </summary>
public sealed class RebuildTests(ITestOutputHelper output)
{
    private const int MiB = 1024 * 1024;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private Task<TestCluster> StartClusterAsync(params string[] chunkServerArgs) =>
        TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(output, LogLevel.Information), chunkServers: 6, racks: 3, chunkSize: 4 * MiB,
            extraChunkServerArgs: chunkServerArgs,
            extraMasterArgs: ["--heartbeat-timeout", "4s", "--dead-after", "5", "--max-rebuilds", "6"]);

    /// <summary>Writes <paramref name="blocks"/> MiB from a client on node-1 (so chunk server 1 holds a replica of every chunk).</summary>
    private static async Task<PanguFileInfo> WriteAsync(TestCluster cluster, string path, int seed, int blocks)
    {
        var client = cluster.CreateClient(clientNode: "node-1");
        await client.CreateAsync(path);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed, blocks, MiB);
            await appender.CloseAsync();
        }
        return (await client.StatAsync(path))!;
    }

    private static byte[] Expected(int seed, int blocks)
    {
        var data = new byte[blocks * MiB];
        for (var i = 0; i < blocks; i++)
        {
            Streams.Block(seed, i, MiB).CopyTo(data, i * MiB);
        }
        return data;
    }

    /// <summary>
    /// Waits until every chunk of the file has exactly 3 good replicas on 3 racks, none on an excluded server, one on
    /// <paramref name="mustHold"/> when given, and (when <paramref name="checkServers"/>) every replica really on its
    /// chunk server, sealed at the chunk's length: the master's word alone could come from before it saw a loss.
    /// </summary>
    private async Task<PanguFileInfo> WaitForFullRedundancyAsync(TestCluster cluster, string path, IReadOnlyCollection<string> excluded,
        string? mustHold = null, bool checkServers = false)
    {
        var client = cluster.CreateClient();
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var stat = (await client.StatAsync(path))!;
            var status = await cluster.Launcher.GetClusterStatusAsync();
            var healthy = stat.Chunks.All(c =>
                c.Sealed && c.Replicas.Count == 3 && c.Replicas.All(r => !r.Bad && !excluded.Contains(r.ChunkServerId))
                && c.Replicas.Select(r => r.Rack).Distinct().Count() == 3 && c.Replicas.Select(r => r.Node).Distinct().Count() == 3
                && (mustHold is null || c.Replicas.Any(r => r.ChunkServerId == mustHold)));
            healthy = healthy && (!checkServers || await EveryReplicaOnItsServerAsync(stat, cluster.Launcher.ClientTls()));
            output.WriteLine($"under-replicated {status.UnderReplicatedChunks}, degraded {status.DegradedChunks}, bad {status.BadReplicas}, " +
                $"copies active {status.Rebuild?.CopiesActive}, completed {status.Rebuild?.CopiesCompleted}, healthy {healthy}");
            if (healthy && status.UnderReplicatedChunks == 0 && status.DegradedChunks == 0 && status.BadReplicas == 0)
            {
                return stat;
            }
            Assert.True(DateTime.UtcNow < deadline, $"chunks of {path} not back to 3 good replicas on 3 racks within {Patience}");
            await Task.Delay(500);
        }
    }

    private static async Task<bool> EveryReplicaOnItsServerAsync(PanguFileInfo stat, FeitianK8s.Core.Security.ComponentTls? tls)
    {
        foreach (var chunk in stat.Chunks)
        {
            foreach (var replica in chunk.Replicas)
            {
                using var raw = new RawChunkServer(replica.Address, tls);
                try
                {
                    var info = await raw.InfoAsync(chunk.Id);
                    if (!info.Sealed || info.Length != (ulong)chunk.Length)
                    {
                        return false;
                    }
                }
                catch (RpcException)
                {
                    return false;
                }
            }
        }
        return true;
    }

    /// <summary>Reads every replica of every chunk straight from its chunk server and compares it with what was written.</summary>
    private static async Task AssertEveryReplicaIntactAsync(PanguFileInfo stat, byte[] expected, FeitianK8s.Core.Security.ComponentTls? tls)
    {
        foreach (var chunk in stat.Chunks)
        {
            foreach (var replica in chunk.Replicas)
            {
                using var raw = new RawChunkServer(replica.Address, tls);
                var info = await raw.InfoAsync(chunk.Id);
                Assert.True(info.Sealed, $"replica of chunk {chunk.Id} on {replica.ChunkServerId} is not sealed");
                Assert.Equal((ulong)chunk.Length, info.Length);
                var data = new List<byte>();
                for (long at = 0; at < chunk.Length; at += MiB)
                {
                    data.AddRange(await raw.ReadAsync(chunk.Id, (ulong)at, (uint)Math.Min(MiB, chunk.Length - at)));
                }
                Assert.True(expected.AsSpan((int)chunk.FileOffset, (int)chunk.Length).SequenceEqual(data.ToArray()),
                    $"replica of chunk {chunk.Id} on {replica.ChunkServerId} differs from what was written");
            }
        }
    }

    private static async Task AssertRefusesAsync(string address, FeitianK8s.Core.Security.ComponentTls? tls)
    {
        using var raw = new RawChunkServer(address, tls);
        var error = await Assert.ThrowsAsync<RpcException>(() => raw.InfoAsync(1));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
    }

    /// <summary>Three chunk servers for three replicas: the server that lost its disk is the only place the lost replicas can go.</summary>
    private Task<TestCluster> StartThreeServerClusterAsync() =>
        TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(output, LogLevel.Information), chunkServers: 3, racks: 3, chunkSize: 4 * MiB,
            extraMasterArgs: ["--heartbeat-timeout", "4s", "--dead-after", "5", "--max-rebuilds", "6"]);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_server_back_with_an_empty_disk_takes_the_rebuild_and_new_allocations(bool identityLost)
    {
        await using var cluster = await StartThreeServerClusterAsync();
        const string path = "/rebuild/empty-disk.bin";
        await WriteAsync(cluster, path, seed: 91, blocks: 12);
        var victim = cluster.Launcher.ChunkServer(2);
        var oldId = victim.Id;

        cluster.Launcher.KillChunkServer(2);
        using (var exited = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            await victim.Process!.WaitForExitAsync(exited.Token);
        }
        Assert.True(victim.Process.HasExited, "chunk server 2 still runs after kill -9");
        // A lost disk: its chunks gone (same id), or the whole data directory with the id in it.
        var wiped = identityLost ? victim.DataDir : Path.Combine(victim.DataDir, "chunks");
        Directory.Delete(wiped, recursive: true);
        Directory.CreateDirectory(victim.DataDir);
        await cluster.Launcher.RestartChunkServerAsync(2);
        var newId = cluster.Launcher.ChunkServer(2).Id;
        Assert.Equal(identityLost, newId != oldId);
        output.WriteLine($"chunk server 2 ({oldId}) back empty as {newId} on {victim.GrpcAddress}");

        // Only three servers: full redundancy means the empty server received a copy of every chunk.
        var after = await WaitForFullRedundancyAsync(cluster, path, identityLost ? [oldId] : [], mustHold: newId, checkServers: true);
        Assert.All(after.Chunks, c => Assert.Contains(c.Replicas, r => r.ChunkServerId == newId));
        await AssertEveryReplicaIntactAsync(after, Expected(91, 12), cluster.Launcher.ClientTls());

        // New chunks need all three servers: the empty one is allocated again.
        const string next = "/rebuild/after-empty-disk.bin";
        var written = await WriteAsync(cluster, next, seed: 92, blocks: 6);
        Assert.All(written.Chunks, c => Assert.Contains(c.Replicas, r => r.ChunkServerId == newId));
        Assert.Equal(Streams.Sha256OfBlocks(92, 6, MiB), (await Streams.ReadAllAsync(cluster.CreateClient(), next)).Hash);
        Assert.Equal(Streams.Sha256OfBlocks(91, 12, MiB), (await Streams.ReadAllAsync(cluster.CreateClient(), path)).Hash);
    }

    /// <summary>
    /// The master seals an open chunk that lost a replica while its writer is still alive and idle: it freezes the
    /// survivors before taking their length, so the seal covers every acknowledged byte, and the writer carries on
    /// in a new chunk when it appends again.
    /// </summary>
    [Fact]
    public async Task An_idle_writer_whose_open_chunk_lost_a_replica_keeps_every_acknowledged_byte_when_the_master_seals_it()
    {
        await using var cluster = await StartClusterAsync();
        var client = cluster.CreateClient(clientNode: "node-1");
        const string path = "/rebuild/idle-writer.bin";
        await client.CreateAsync(path);
        await using var writer = await client.OpenForAppendAsync(path);
        var acknowledged = TestData.Random(900_000, 51);
        await writer.AppendAsync(acknowledged);
        var chunk = (await client.StatAsync(path))!.Chunks.Single();
        Assert.False(chunk.Sealed);
        var victim = Enumerable.Range(1, 6).First(i =>
            cluster.Launcher.ChunkServer(i).Node != "node-1" && chunk.Replicas.Any(r => r.ChunkServerId == cluster.Launcher.ChunkServer(i).Id));
        var victimId = cluster.Launcher.ChunkServer(victim).Id;
        cluster.Launcher.KillChunkServer(victim);
        await ServerFaults.AssertServerIsDownAsync(cluster.Launcher.ChunkServer(victim));

        // Dead after 5 s: the master seals the open chunk on the survivors while the writer still holds the file.
        var deadline = DateTime.UtcNow + Patience;
        PanguChunk sealedChunk;
        while (!(sealedChunk = (await client.StatAsync(path))!.Chunks[0]).Sealed)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the master did not seal chunk {chunk.Id} within {Patience}");
            await Task.Delay(250);
        }
        Assert.Equal(acknowledged.Length, sealedChunk.Length);
        foreach (var replica in chunk.Replicas.Where(r => r.ChunkServerId != victimId))
        {
            using var raw = new RawChunkServer(replica.Address, cluster.Launcher.ClientTls());
            var info = await raw.InfoAsync(chunk.Id);
            Assert.True(info.Sealed, $"replica on {replica.ChunkServerId} is not sealed");
            Assert.Equal((ulong)acknowledged.Length, info.Length);
        }

        var more = TestData.Random(300_000, 52);
        await writer.AppendAsync(more);
        await writer.CloseAsync();
        var after = (await client.StatAsync(path))!;
        Assert.Equal(acknowledged.Length + more.Length, after.Length);
        Assert.All(after.Chunks.Skip(1), c => Assert.DoesNotContain(c.Replicas, r => r.ChunkServerId == victimId));
        Assert.Equal(TestData.Sha256([.. acknowledged, .. more]), (await Streams.ReadAllAsync(client, path)).Hash);
    }

    [Fact]
    public async Task Killing_one_of_six_chunk_servers_rebuilds_every_chunk_to_three_good_replicas_on_three_racks()
    {
        await using var cluster = await StartClusterAsync();
        const string path = "/rebuild/kill.bin";
        var before = await WriteAsync(cluster, path, seed: 71, blocks: 24);
        var victim = cluster.Launcher.ChunkServer(1);
        Assert.All(before.Chunks, c => Assert.Contains(c.Replicas, r => r.ChunkServerId == victim.Id));

        cluster.Launcher.KillChunkServer(1);
        Assert.True(victim.Process!.HasExited, "chunk server 1 still runs after kill -9");
        await AssertRefusesAsync(victim.GrpcAddress, cluster.Launcher.ClientTls());
        output.WriteLine($"killed chunk server {victim.Id}; it holds a replica of all {before.Chunks.Count} chunks");

        var after = await WaitForFullRedundancyAsync(cluster, path, [victim.Id]);
        Assert.True((await cluster.Launcher.GetClusterStatusAsync()).ChunkServers.Single(s => s.Id == victim.Id).Dead);
        await AssertEveryReplicaIntactAsync(after, Expected(71, 24), cluster.Launcher.ClientTls());
        Assert.Equal(Streams.Sha256OfBlocks(71, 24, MiB), (await Streams.ReadAllAsync(cluster.CreateClient(), path)).Hash);
    }

    [Fact]
    public async Task A_server_that_returns_after_being_replaced_leaves_every_chunk_with_exactly_its_replica_count()
    {
        await using var cluster = await StartClusterAsync();
        const string path = "/rebuild/return.bin";
        var before = await WriteAsync(cluster, path, seed: 72, blocks: 16);
        var victim = cluster.Launcher.ChunkServer(1);
        var victimId = victim.Id;
        cluster.Launcher.KillChunkServer(1);
        await AssertRefusesAsync(victim.GrpcAddress, cluster.Launcher.ClientTls());
        await WaitForFullRedundancyAsync(cluster, path, [victimId]);

        await cluster.Launcher.RestartChunkServerAsync(1);
        await cluster.Launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(victimId, cluster.Launcher.ChunkServer(1).Id);
        // The returned server's copies are surplus: the master has them deleted, never a replica that is still needed.
        using var raw = new RawChunkServer(cluster.Launcher.ChunkServer(1).GrpcAddress, cluster.Launcher.ClientTls());
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var left = 0;
            foreach (var chunk in before.Chunks)
            {
                try
                {
                    await raw.InfoAsync(chunk.Id);
                    left++;
                }
                catch (RpcException error) when (error.StatusCode == StatusCode.NotFound)
                {
                }
            }
            output.WriteLine($"{left} surplus copies left on the returned server");
            if (left == 0)
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, "the returned server kept its replaced copies");
            await Task.Delay(500);
        }
        // Stable: a few more planning passes change nothing.
        await Task.Delay(3000);
        var after = await WaitForFullRedundancyAsync(cluster, path, [victimId]);
        Assert.All(after.Chunks, c => Assert.Equal(3, c.Replicas.Count));
        await AssertEveryReplicaIntactAsync(after, Expected(72, 16), cluster.Launcher.ClientTls());
    }

    [Fact]
    public async Task A_flipped_byte_in_a_sealed_chunk_nobody_reads_is_found_by_the_scrubber_and_the_replica_replaced()
    {
        // Scrubbing fast so that a pass takes seconds.
        await using var cluster = await StartClusterAsync("--scrub-bandwidth", "64Mi");
        const string path = "/rebuild/scrub.bin";
        var before = await WriteAsync(cluster, path, seed: 73, blocks: 12);
        var chunk = before.Chunks[1];
        var victim = chunk.Replicas[0];
        var server = cluster.Launcher.ChunkServers.Single(s => s.Id == victim.ChunkServerId);
        var file = DiskFaults.FindChunkDataFile(server.DataDir, chunk.Id);
        Assert.NotNull(file);
        const long offset = 1_234_567;
        var original = File.ReadAllBytes(file)[offset];
        DiskFaults.FlipByte(file, offset);
        Assert.NotEqual(original, File.ReadAllBytes(file)[offset]);
        output.WriteLine($"flipped byte {offset} of chunk {chunk.Id} on {victim.ChunkServerId} ({file})");

        // Nobody reads the file: only the scrubber can find it. It reports chunk id + server id, the master replaces the replica.
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            var status = await cluster.Launcher.GetClusterStatusAsync();
            var scrub = status.ChunkServers.Single(s => s.Id == victim.ChunkServerId).Scrub;
            output.WriteLine($"victim scrub: bad found {scrub?.BadFound}, verified {scrub?.BytesVerified}");
            if (scrub is { BadFound: > 0 })
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, "the scrubber never found the flipped byte");
            await Task.Delay(500);
        }
        var after = await WaitForFullRedundancyAsync(cluster, path, []);
        Assert.DoesNotContain(after.Chunks.Single(c => c.Id == chunk.Id).Replicas, r => r.ChunkServerId == victim.ChunkServerId);
        await AssertEveryReplicaIntactAsync(after, Expected(73, 12), cluster.Launcher.ClientTls());
        Assert.Equal(Streams.Sha256OfBlocks(73, 12, MiB), (await Streams.ReadAllAsync(cluster.CreateClient(), path)).Hash);
    }

    [Fact]
    public async Task A_data_directory_renamed_away_has_its_chunks_rebuilt_elsewhere()
    {
        await using var cluster = await StartClusterAsync();
        const string path = "/rebuild/lost-dir.bin";
        var before = await WriteAsync(cluster, path, seed: 74, blocks: 16);
        var victim = cluster.Launcher.ChunkServer(1);
        var chunks = Path.Combine(victim.DataDir, "chunks");
        Assert.True(Directory.Exists(chunks), $"{chunks} does not exist");
        // The disk "goes away" under the running server: its chunks folder is renamed away (root ignores chmod 000).
        Directory.Move(chunks, chunks + ".gone");
        Assert.False(Directory.Exists(chunks));
        Assert.True(victim.IsRunning);

        var after = await WaitForFullRedundancyAsync(cluster, path, [victim.Id]);
        Assert.True(victim.IsRunning, "the chunk server with the lost directory should keep running");
        await AssertEveryReplicaIntactAsync(after, Expected(74, 16), cluster.Launcher.ClientTls());
        Assert.Equal(Streams.Sha256OfBlocks(74, 16, MiB), (await Streams.ReadAllAsync(cluster.CreateClient(), path)).Hash);
    }
}
