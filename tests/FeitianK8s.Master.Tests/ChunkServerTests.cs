using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using FileInfo = FeitianK8s.Proto.Master.FileInfo;

namespace FeitianK8s.Master.Tests;

public sealed class ChunkServerTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private readonly ManualClock _clock = new();
    private RunningMaster _master = null!;
    private Proto.Master.Master.MasterClient Client => _master.Client;

    public async Task InitializeAsync() =>
        _master = await RunningMaster.StartAsync(_dir.Path, output, o => new MasterOptions
        {
            DataDirectory = o.DataDirectory,
            HeartbeatTimeout = TimeSpan.FromSeconds(5),
            Clock = _clock,
        });

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    private async Task<FileInfo> WriteFileAsync(string path, int chunks)
    {
        await Client.CreateFileAsync(new CreateFileRequest { Path = path });
        var epoch = (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = path })).Epoch;
        for (var i = 0; i < chunks; i++)
        {
            var chunk = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = path, Epoch = epoch });
            await Client.CommitChunkAsync(new CommitChunkRequest { Path = path, Epoch = epoch, ChunkId = chunk.ChunkId, Length = 100, Sealed = true });
        }
        return await Client.StatFileAsync(new StatFileRequest { Path = path });
    }

    [Fact]
    public async Task NoAliveChunkServersMeansResourceExhausted()
    {
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/f" });
        await RpcAssert.Fails(StatusCode.ResourceExhausted, ErrorReasons.NoChunkServers, () => Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f" }));

        await _master.RegisterServersAsync(3, 3);
        Assert.Single((await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f" })).Replicas.Take(1));

        _clock.Advance(TimeSpan.FromSeconds(6));
        var status = await Client.GetClusterStatusAsync(new GetClusterStatusRequest());
        Assert.All(status.ChunkServers, s => Assert.False(s.Alive));
        await RpcAssert.Fails(StatusCode.ResourceExhausted, ErrorReasons.NoChunkServers, () => Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f" }));

        await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-1", CapacityBytes = 100, UsedBytes = 10, ChunkCount = 1 });
        var one = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f" });
        Assert.Equal("cs-1", Assert.Single(one.Replicas).ChunkServerId);
        Assert.True(one.PlacementDegraded);
    }

    [Fact]
    public async Task ClusterStatusReportsMastersServersAndDegradedChunks()
    {
        await _master.RegisterServersAsync(4, 2);
        await WriteFileAsync("/f", 2);
        var status = await Client.GetClusterStatusAsync(new GetClusterStatusRequest());
        var master = Assert.Single(status.Masters);
        Assert.Equal(_master.Host.GrpcAddress, master.Address);
        Assert.Equal("leader", master.Role);
        Assert.Equal(4, status.ChunkServers.Count);
        Assert.All(status.ChunkServers, s =>
        {
            Assert.True(s.Alive);
            Assert.Equal(1UL << 40, s.CapacityBytes);
            Assert.True(s.LastHeartbeatUnixMs > 0);
        });
        Assert.Equal(2UL, status.DegradedChunks);
        Assert.Equal(0UL, status.BadReplicas);
    }

    [Fact]
    public async Task DeletedFilesChunksAreSentUntilAcknowledged()
    {
        await _master.RegisterServersAsync(3, 3);
        var file = await WriteFileAsync("/f", 2);
        var ids = file.Chunks.Select(c => c.ChunkId).ToList();
        Assert.Empty((await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-0" })).DeleteChunks);

        await Client.DeleteFileAsync(new DeleteFileRequest { Path = "/f" });
        foreach (var server in new[] { "cs-0", "cs-1", "cs-2" })
        {
            var first = await Client.HeartbeatAsync(new HeartbeatRequest { Id = server });
            Assert.True(first.Known);
            Assert.Equal(ids, first.DeleteChunks);
            Assert.Equal(ids, (await Client.HeartbeatAsync(new HeartbeatRequest { Id = server })).DeleteChunks);
        }
        var partial = await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-0", DeletedChunks = { ids[0] } });
        Assert.Equal([ids[1]], partial.DeleteChunks);
        Assert.Empty((await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-0", DeletedChunks = { ids[1], 424242 } })).DeleteChunks);
        Assert.Equal(ids, (await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-1" })).DeleteChunks);

        Assert.False((await Client.HeartbeatAsync(new HeartbeatRequest { Id = "unknown-server" })).Known);
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.HeartbeatAsync(new HeartbeatRequest { Id = "" }));
    }

    [Fact]
    public async Task RegistrationReturnsOrphansAndUpdatesTheAddress()
    {
        await _master.RegisterServersAsync(3, 3);
        var file = await WriteFileAsync("/f", 1);
        var live = file.Chunks[0].ChunkId;
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/g" });
        var epoch = (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/g" })).Epoch;
        var doomed = (await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/g", Epoch = epoch })).ChunkId;
        await Client.DeleteFileAsync(new DeleteFileRequest { Path = "/g" });

        var response = await Client.RegisterChunkServerAsync(new RegisterChunkServerRequest
        {
            Identity = new ChunkServerIdentity { Id = "cs-0", Node = "node-0", Rack = "rack-0", Address = "http://127.0.0.1:9999" },
            Chunks = { new ChunkReport { ChunkId = live, Length = 100, Sealed = true }, new ChunkReport { ChunkId = doomed } },
            CapacityBytes = 1000,
        });
        Assert.Equal([doomed], response.OrphanChunks);
        Assert.Equal(1000u, response.HeartbeatIntervalMs);
        var status = await Client.GetClusterStatusAsync(new GetClusterStatusRequest());
        Assert.Equal("http://127.0.0.1:9999", status.ChunkServers.Single(s => s.Id == "cs-0").Address);
        var replica = (await Client.StatFileAsync(new StatFileRequest { Path = "/f" })).Chunks[0].Replicas.SingleOrDefault(r => r.ChunkServerId == "cs-0");
        Assert.Equal("http://127.0.0.1:9999", replica?.Address);

        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.RegisterChunkServerAsync(new RegisterChunkServerRequest()));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.RegisterChunkServerAsync(new RegisterChunkServerRequest
        {
            Identity = new ChunkServerIdentity { Id = "", Node = "n", Address = "a" },
        }));
        Assert.Equal(3, (await Client.GetClusterStatusAsync(new GetClusterStatusRequest())).ChunkServers.Count);
    }

    [Fact]
    public async Task HeartbeatWithANewAddressUpdatesTheRegistry()
    {
        await _master.RegisterServersAsync(3, 3);
        var file = await WriteFileAsync("/f", 1);
        var server = file.Chunks[0].Replicas[0].ChunkServerId;
        var response = await Client.HeartbeatAsync(new HeartbeatRequest
        {
            Id = server, Node = "node-moved", Rack = "rack-9", Address = "http://127.0.0.1:1234", CapacityBytes = 10, UsedBytes = 5, ChunkCount = 1,
        });
        Assert.True(response.Known);
        var replica = (await Client.StatFileAsync(new StatFileRequest { Path = "/f" })).Chunks[0].Replicas[0];
        Assert.Equal(("node-moved", "rack-9", "http://127.0.0.1:1234"), (replica.Node, replica.Rack, replica.Address));
        var status = (await Client.GetClusterStatusAsync(new GetClusterStatusRequest())).ChunkServers.Single(s => s.Id == server);
        Assert.Equal((10UL, 5UL, 1UL), (status.CapacityBytes, status.UsedBytes, status.Chunks));
    }

    [Fact]
    public async Task BadReplicaReportsAreListedAndCounted()
    {
        await _master.RegisterServersAsync(3, 3);
        var file = await WriteFileAsync("/f", 1);
        var chunk = file.Chunks[0];
        var victim = chunk.Replicas[1].ChunkServerId;
        await Client.ReportBadReplicaAsync(new ReportBadReplicaRequest { ChunkId = chunk.ChunkId, ChunkServerId = victim, Reason = "checksum mismatch" });
        await Client.ReportBadReplicaAsync(new ReportBadReplicaRequest { ChunkId = chunk.ChunkId, ChunkServerId = victim, Reason = "again" });

        var replicas = (await Client.StatFileAsync(new StatFileRequest { Path = "/f" })).Chunks[0].Replicas;
        Assert.True(replicas.Single(r => r.ChunkServerId == victim).Bad);
        Assert.Equal(2, replicas.Count(r => !r.Bad));
        var status = await Client.GetClusterStatusAsync(new GetClusterStatusRequest());
        Assert.Equal(1UL, status.BadReplicas);
        Assert.Equal(1UL, status.DegradedChunks);

        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.ReportBadReplicaAsync(new ReportBadReplicaRequest { ChunkId = 999_999, ChunkServerId = victim }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.ReportBadReplicaAsync(new ReportBadReplicaRequest { ChunkId = chunk.ChunkId, ChunkServerId = "cs-unknown" }));
    }
}
