using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using FileInfo = FeitianK8s.Proto.Master.FileInfo;

namespace FeitianK8s.Master.Tests;

public sealed class RestartTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(10_000)]
    [InlineData(3)]
    public async Task RestartKeepsNamespaceVolumesEpochsAndRegistry(int snapshotEvery)
    {
        MasterOptions Configure(MasterOptions o) => new() { DataDirectory = o.DataDirectory, HeartbeatTimeout = o.HeartbeatTimeout, SnapshotEveryCommands = snapshotEvery };
        FileInfo before;
        ulong lastChunk;
        await using (var master = await RunningMaster.StartAsync(_dir.Path, output, Configure))
        {
            var client = master.Client;
            await master.RegisterServersAsync(6, 3);
            await client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc", SizeBytes = 1 << 20, Labels = { ["k"] = "v" } });
            await client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc", Holder = "n" });
            await client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc", Holder = "n" });
            await client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc", Node = "reader-2", Attached = true });
            await client.RegisterNodeAsync(new RegisterNodeRequest { Id = "reader-2", Rack = "r2" });
            await client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc", Node = "reader-1", Attached = true });
            await client.CreateFileAsync(new CreateFileRequest { Path = "/volumes/pvc/log", Guard = new VolumeGuard { Volume = "pvc", Epoch = 2 } });
            await client.CreateFileAsync(new CreateFileRequest { Path = "/images/a.img", Replicas = 2 });
            await client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/images/a.img" });
            var epoch = (await client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/images/a.img" })).Epoch;
            var chunk = await client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = epoch });
            await client.CommitChunkAsync(new CommitChunkRequest { Path = "/images/a.img", Epoch = epoch, ChunkId = chunk.ChunkId, Length = 12345, Sealed = true });
            lastChunk = chunk.ChunkId;
            before = await client.StatFileAsync(new StatFileRequest { Path = "/images/a.img" });
        }

        await using (var master = await RunningMaster.StartAsync(_dir.Path, output, Configure))
        {
            var client = master.Client;
            var after = await client.StatFileAsync(new StatFileRequest { Path = "/images/a.img" });
            Assert.Equal(before, after);
            Assert.Equal(2UL, after.Epoch);
            Assert.Equal(12345UL, after.Length);
            Assert.Equal(["/images/a.img", "/volumes/pvc/log"], (await client.ListFilesAsync(new ListFilesRequest { Recursive = true })).Entries.Select(e => e.Path));
            var volume = await client.StatVolumeAsync(new StatVolumeRequest { Name = "pvc" });
            Assert.Equal(2UL, volume.Epoch);
            Assert.Equal("v", volume.Labels["k"]);
            Assert.Equal(["reader-1", "reader-2"], volume.Readers);
            Assert.Equal("r2", (await client.GetNodeAsync(new GetNodeRequest { Id = "reader-2" })).Rack);
            Assert.Equal(3UL, (await client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc" })).Epoch);
            Assert.Equal(3UL, (await client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/images/a.img" })).Epoch);

            // The registry survives; liveness does not until heartbeats resume.
            var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest());
            Assert.Equal(6, status.ChunkServers.Count);
            Assert.All(status.ChunkServers, s => Assert.False(s.Alive));
            Assert.True((await client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-0", CapacityBytes = 100 })).Known);
            Assert.True((await client.GetClusterStatusAsync(new GetClusterStatusRequest())).ChunkServers.Single(s => s.Id == "cs-0").Alive);
            // Report grace: with one of six servers back, allocation asks to retry rather than place one replica.
            await RpcAssert.Fails(StatusCode.Unavailable, ErrorReasons.ChunkServersReporting,
                () => client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = 3 }).ResponseAsync);
            for (var i = 1; i < 6; i++)
            {
                Assert.True((await client.HeartbeatAsync(new HeartbeatRequest { Id = $"cs-{i}", CapacityBytes = 100 })).Known);
            }
            var next = await client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = 3 });
            Assert.False(next.PlacementDegraded);
            Assert.True(next.ChunkId > lastChunk);
        }
    }
}
