using System.Collections.Concurrent;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// Failover of a Raft group of real master processes: SIGKILL of the leader, a member
/// whose data directory was wiped, all members killed at once, and a history of
/// concurrent lease and allocation calls under leader kills.
/// </summary>
public sealed class RaftFailoverTests(ITestOutputHelper output)
{
    private static Task CreateFile(MasterProcessGroup group, string path) =>
        group.OnLeader(async c => await c.CreateFileAsync(new CreateFileRequest { Path = path, Replicas = 1 }));

    private static async Task<List<string>> FilesOnLeader(MasterProcessGroup group, string directory) =>
        (await group.OnLeader(async c => await c.ListFilesAsync(new ListFilesRequest { Path = directory, Recursive = true })))
            .Entries.Select(e => e.Path).ToList();

    [Fact]
    public async Task KillingTheLeaderElectsANewOneWithEveryAcknowledgedCommandAndTheMemberCatchesUpOnRestart()
    {
        await using var group = new MasterProcessGroup(output);
        group.StartAll();
        var leader = await group.WaitForLeaderAsync();
        var acknowledged = new List<string>();
        for (var i = 0; i < 30; i++)
        {
            await CreateFile(group, $"/a/{i:D3}");
            acknowledged.Add($"/a/{i:D3}");
        }

        group.Kill(leader);
        Assert.False(group.IsRunning(leader));
        Assert.Null(await group.StateOf(leader)); // the port refuses
        var next = await group.WaitForLeaderAsync();
        Assert.NotEqual(leader, next);
        Assert.Equal(acknowledged, await FilesOnLeader(group, "/a"));
        for (var i = 30; i < 40; i++)
        {
            await CreateFile(group, $"/a/{i:D3}");
            acknowledged.Add($"/a/{i:D3}");
        }

        group.Start(leader);
        // GetMasterState is answered by every member: ask the one that serves linearizable reads.
        var leaderState = (await group.StateOf(await group.WaitForLeaderAsync()))!;
        Assert.Equal("leader", leaderState.Role);
        await RaftTests.WaitUntilAsync(async () => (await group.StateOf(leader))?.AppliedIndex >= leaderState.CommitIndex);
        var rejoined = (await group.StateOf(leader))!;
        Assert.Equal("follower", rejoined.Role);
        Assert.Equal(leaderState.Term, rejoined.Term);
        Assert.Equal(acknowledged, await FilesOnLeader(group, "/a"));
    }

    [Fact]
    public async Task AMemberWhoseDataDirectoryWasWipedRejoinsAndCatchesUpBySnapshot()
    {
        await using var group = new MasterProcessGroup(output, snapshotEvery: 10);
        group.StartAll();
        var leader = await group.WaitForLeaderAsync();
        var wiped = (leader + 1) % group.Size;
        for (var i = 0; i < 60; i++)
        {
            await CreateFile(group, $"/s/{i:D3}");
        }
        group.Kill(wiped);
        Directory.Delete(group.DataDirectories[wiped].Path, recursive: true);
        Directory.CreateDirectory(group.DataDirectories[wiped].Path);
        Assert.Empty(Directory.EnumerateFileSystemEntries(group.DataDirectories[wiped].Path));
        for (var i = 60; i < 80; i++)
        {
            await CreateFile(group, $"/s/{i:D3}");
        }

        group.Start(wiped);
        // GetMasterState is answered by every member: ask the one that serves linearizable reads.
        var leaderState = (await group.StateOf(await group.WaitForLeaderAsync()))!;
        await RaftTests.WaitUntilAsync(async () => (await group.StateOf(wiped))?.AppliedIndex >= leaderState.CommitIndex);
        // The leader compacted its log into snapshots, so the wiped member got one installed.
        Assert.NotEmpty(Directory.EnumerateFiles(Path.Combine(group.DataDirectories[wiped].Path, "snapshots"), "*", SearchOption.AllDirectories));

        // The rejoined member holds everything: with the other follower gone it is part of every majority.
        var other = Enumerable.Range(0, group.Size).Single(i => i != leader && i != wiped);
        group.Kill(other);
        for (var i = 80; i < 85; i++)
        {
            await CreateFile(group, $"/s/{i:D3}");
        }
        group.Kill(leader);
        group.Start(other);
        await group.WaitForLeaderAsync();
        Assert.Equal(Enumerable.Range(0, 85).Select(i => $"/s/{i:D3}"), await FilesOnLeader(group, "/s"));
    }

    [Fact]
    public async Task AllMastersKilledAtOnceKeepEveryCommittedCommand()
    {
        await using var group = new MasterProcessGroup(output, snapshotEvery: 25);
        group.StartAll();
        await group.WaitForLeaderAsync();
        await group.OnLeader(async c => await c.CreateVolumeAsync(new CreateVolumeRequest { Name = "v", SizeBytes = 1 << 20, Replicas = 1 }));
        for (var i = 0; i < 40; i++)
        {
            await CreateFile(group, $"/all/{i:D3}");
        }
        var epoch = (await group.OnLeader(async c => await c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "v", Holder = "h" }))).Epoch;

        for (var i = 0; i < group.Size; i++)
        {
            group.Kill(i);
        }
        group.StartAll();
        await group.WaitForLeaderAsync();
        Assert.Equal(Enumerable.Range(0, 40).Select(i => $"/all/{i:D3}"), await FilesOnLeader(group, "/all"));
        Assert.Equal(epoch, (await group.OnLeader(async c => await c.StatVolumeAsync(new StatVolumeRequest { Name = "v" }))).Epoch);
        Assert.Equal(epoch + 1, (await group.OnLeader(async c => await c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "v", Holder = "h2" }))).Epoch);
    }

    /// <summary>
    /// Several clients take volume leases and file write leases and allocate chunks while the
    /// leader is killed twice. Afterwards: no epoch of a volume or file was handed to two
    /// holders, no chunk id was issued twice, and every acknowledged result is in the state.
    /// </summary>
    [Fact]
    public async Task ConcurrentLeasesAndAllocationsUnderLeaderKillsNeverRepeatAnEpochOrAChunkId()
    {
        await using var group = new MasterProcessGroup(output, snapshotEvery: 50);
        group.StartAll();
        await group.WaitForLeaderAsync();
        string[] volumes = ["h0", "h1"];
        foreach (var volume in volumes)
        {
            await group.OnLeader(async c => await c.CreateVolumeAsync(new CreateVolumeRequest { Name = volume, SizeBytes = 1 << 20, Replicas = 1 }));
            await CreateFile(group, $"/h/{volume}");
        }
        await RegisterServers(group);

        var volumeEpochs = new ConcurrentBag<(string Volume, ulong Epoch, string Holder)>();
        var fileEpochs = new ConcurrentBag<(string Path, ulong Epoch, string Holder)>();
        var chunks = new ConcurrentBag<(string Path, ulong Epoch, ulong ChunkId)>();
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 4).Select(c => Task.Run(async () =>
        {
            var holder = $"client-{c}";
            var n = 0;
            while (!stop.IsCancellationRequested)
            {
                var volume = volumes[n++ % volumes.Length];
                try
                {
                    var lease = await group.OnLeader(async m => await m.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = volume, Holder = holder }));
                    volumeEpochs.Add((volume, lease.Epoch, holder));
                    var path = $"/h/{volume}";
                    var open = await group.OnLeader(async m => await m.OpenForAppendAsync(new OpenForAppendRequest { Path = path, ClientNode = holder }));
                    fileEpochs.Add((path, open.Epoch, holder));
                    var chunk = await group.OnLeader(async m =>
                    {
                        await Heartbeats(m);
                        return await m.AllocateChunkAsync(new AllocateChunkRequest { Path = path, Epoch = open.Epoch });
                    });
                    chunks.Add((path, open.Epoch, chunk.ChunkId));
                }
                catch (RpcException error) when (error.StatusCode == StatusCode.FailedPrecondition && FeitianStatus.HasReason(error, ErrorReasons.StaleEpoch))
                {
                    // Another client took the file's lease in between: fencing at work.
                }
            }
        })).ToList();

        for (var kill = 0; kill < 2; kill++)
        {
            await Task.Delay(TimeSpan.FromSeconds(3));
            var leader = await group.WaitForLeaderAsync();
            group.Kill(leader);
            Assert.False(group.IsRunning(leader));
            await group.WaitForLeaderAsync();
            await Task.Delay(TimeSpan.FromSeconds(2));
            group.Start(leader);
        }
        await Task.Delay(TimeSpan.FromSeconds(2));
        await stop.CancelAsync();
        await Task.WhenAll(clients);
        output.WriteLine($"acknowledged: {volumeEpochs.Count} volume leases, {fileEpochs.Count} file leases, {chunks.Count} chunks");
        Assert.True(volumeEpochs.Count > 10, "too few leases were acknowledged to judge");
        Assert.True(chunks.Count > 5, "too few allocations were acknowledged to judge");

        foreach (var byVolume in volumeEpochs.GroupBy(v => v.Volume))
        {
            var epochs = byVolume.Select(v => v.Epoch).ToList();
            Assert.Equal(epochs.Count, epochs.Distinct().Count());
            var now = await group.OnLeader(async c => await c.StatVolumeAsync(new StatVolumeRequest { Name = byVolume.Key }));
            Assert.True(now.Epoch >= epochs.Max(), $"volume {byVolume.Key} is at epoch {now.Epoch} below the acknowledged {epochs.Max()}");
        }
        foreach (var byFile in fileEpochs.GroupBy(f => f.Path))
        {
            var epochs = byFile.Select(f => f.Epoch).ToList();
            Assert.Equal(epochs.Count, epochs.Distinct().Count());
        }
        var ids = chunks.Select(c => c.ChunkId).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        foreach (var byFile in chunks.GroupBy(c => c.Path))
        {
            var file = await group.OnLeader(async c => await c.StatFileAsync(new StatFileRequest { Path = byFile.Key }));
            var present = file.Chunks.Select(c => c.ChunkId).ToHashSet();
            Assert.All(byFile, c => Assert.Contains(c.ChunkId, present));
        }
    }

    private static async Task RegisterServers(MasterProcessGroup group)
    {
        for (var i = 0; i < 3; i++)
        {
            var id = i;
            await group.OnLeader(async c => await c.RegisterChunkServerAsync(new RegisterChunkServerRequest
            {
                Identity = new ChunkServerIdentity { Id = $"cs-{id}", Node = $"node-{id}", Rack = $"rack-{id}", Address = $"http://127.0.0.1:{7000 + id}" },
                CapacityBytes = 1UL << 40,
            }));
        }
    }

    /// <summary>Liveness is the leader's soft state: a new leader learns it from heartbeats.</summary>
    private static async Task Heartbeats(Proto.Master.Master.MasterClient client)
    {
        for (var i = 0; i < 3; i++)
        {
            await client.HeartbeatAsync(new HeartbeatRequest { Id = $"cs-{i}", CapacityBytes = 1UL << 40 });
        }
    }
}
