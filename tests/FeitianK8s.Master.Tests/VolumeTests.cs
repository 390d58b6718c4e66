using FeitianK8s.Core.Common;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

public sealed class VolumeTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private RunningMaster _master = null!;
    private Proto.Master.Master.MasterClient Client => _master.Client;

    public async Task InitializeAsync()
    {
        _master = await RunningMaster.StartAsync(_dir.Path, output);
        await _master.RegisterServersAsync(3, 3);
    }

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    [Theory]
    [InlineData("", 4096u, 0u)]
    [InlineData("Upper", 4096u, 0u)]
    [InlineData("-leading", 4096u, 0u)]
    [InlineData("trailing-", 4096u, 0u)]
    [InlineData("under_score", 4096u, 0u)]
    [InlineData("a..b", 4096u, 0u)]
    [InlineData("ok", 0u, 0u)]
    [InlineData("ok", 4097u, 0u)]
    [InlineData("ok", 4096u, 6u)]
    public async Task InvalidVolumesAreRefused(string name, uint size, uint replicas)
    {
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            () => Client.CreateVolumeAsync(new CreateVolumeRequest { Name = name, SizeBytes = size, Replicas = replicas }));
        Assert.Empty((await Client.ListVolumesAsync(new ListVolumesRequest())).Volumes);
    }

    [Fact]
    public async Task NameLengthLimitIs253()
    {
        var longest = string.Join('.', Enumerable.Repeat(new string('a', 63), 4))[..253];
        Assert.Equal(253, longest.Length);
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = longest.TrimEnd('.'), SizeBytes = 4096 });
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            () => Client.CreateVolumeAsync(new CreateVolumeRequest { Name = new string('a', 254), SizeBytes = 4096 }));
    }

    [Fact]
    public async Task VolumeLifecycleWithResizeAndLeases()
    {
        var created = await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-1", SizeBytes = 1 << 30, Labels = { ["app"] = "db" } });
        Assert.Equal("/volumes/pvc-1", created.Directory);
        Assert.Equal(3u, created.Replicas);
        Assert.Equal(0UL, created.Epoch);
        Assert.Equal("db", created.Labels["app"]);
        await RpcAssert.Fails(StatusCode.AlreadyExists, ErrorReasons.AlreadyExists, () => Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-1", SizeBytes = 4096 }));
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-0", SizeBytes = 8192, Replicas = 1 });
        Assert.Equal(["pvc-0", "pvc-1"], (await Client.ListVolumesAsync(new ListVolumesRequest())).Volumes.Select(v => v.Name));

        Assert.Equal(2UL << 30, (await Client.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "pvc-1", SizeBytes = 2UL << 30 })).SizeBytes);
        Assert.Equal(2UL << 30, (await Client.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "pvc-1", SizeBytes = 2UL << 30 })).SizeBytes);
        await RpcAssert.Fails(StatusCode.FailedPrecondition, MasterErrorReasons.Shrink, () => Client.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "pvc-1", SizeBytes = 1 << 30 }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "pvc-1", SizeBytes = (3UL << 30) + 1 }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.ResizeVolumeAsync(new ResizeVolumeRequest { Name = "nope", SizeBytes = 4096 }));
        Assert.Equal(2UL << 30, (await Client.StatVolumeAsync(new StatVolumeRequest { Name = "pvc-1" })).SizeBytes);

        var first = await Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc-1", Holder = "node-a" });
        var second = await Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc-1", Holder = "node-b" });
        Assert.Equal(1UL, first.Epoch);
        Assert.Equal(2UL, second.Epoch);
        Assert.Equal(2UL, second.Volume.Epoch);
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "nope" }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.StatVolumeAsync(new StatVolumeRequest { Name = "nope" }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.StatVolumeAsync(new StatVolumeRequest { Name = "Bad!" }));
    }

    [Fact]
    public async Task NodesAreKnownWhenRegisteredOrRunningAChunkServer()
    {
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.GetNodeAsync(new GetNodeRequest { Id = "csi-a" }));
        for (var i = 0; i < 2; i++)
        {
            var registered = await Client.RegisterNodeAsync(new RegisterNodeRequest { Id = "csi-a", Rack = "rack-9" });
            // Registered without a node lease: the leader reports its lease as "none".
            Assert.Equal(new NodeInfo { Id = "csi-a", Rack = "rack-9", Registered = true, Lease = new NodeLeaseStatus { Node = "csi-a", State = "none" } }, registered);
        }
        Assert.Equal("rack-9", (await Client.GetNodeAsync(new GetNodeRequest { Id = "csi-a" })).Rack);
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.RegisterNodeAsync(new RegisterNodeRequest { Id = "" }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            () => Client.RegisterNodeAsync(new RegisterNodeRequest { Id = "n", Rack = new string('r', 300) }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.GetNodeAsync(new GetNodeRequest { Id = "n" }));
    }

    [Fact]
    public async Task ReadersAreRecordedIdempotentlyWithoutTouchingTheLease()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-r", SizeBytes = 1 << 20 });
        var lease = await Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc-r", Holder = "writer" });
        foreach (var node in new[] { "node-b", "node-a", "node-b" })
        {
            await Client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc-r", Node = node, Attached = true });
        }
        var volume = await Client.StatVolumeAsync(new StatVolumeRequest { Name = "pvc-r" });
        Assert.Equal(["node-a", "node-b"], volume.Readers);
        Assert.Equal(lease.Epoch, volume.Epoch);
        Assert.Equal("writer", volume.LeaseHolder);

        for (var i = 0; i < 2; i++)
        {
            var after = await Client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc-r", Node = "node-a", Attached = false });
            Assert.Equal(["node-b"], after.Readers);
        }
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "nope", Node = "node-a", Attached = true }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            () => Client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc-r", Node = "", Attached = true }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            () => Client.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = "pvc-r", Node = new string('n', 300), Attached = true }));
        Assert.Equal(["node-b"], (await Client.StatVolumeAsync(new StatVolumeRequest { Name = "pvc-r" })).Readers);
    }

    [Fact]
    public async Task GuardRefusesStaleVolumeEpochs()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc", SizeBytes = 1 << 20 });
        var old = (await Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc", Holder = "a" })).Epoch;
        var current = (await Client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "pvc", Holder = "b" })).Epoch;
        VolumeGuard Guard(ulong epoch) => new() { Volume = "pvc", Epoch = epoch };

        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.CreateFileAsync(new CreateFileRequest { Path = "/volumes/pvc/log", Guard = Guard(old) }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.CreateFileAsync(new CreateFileRequest { Path = "/volumes/pvc/log", Guard = new VolumeGuard { Volume = "other", Epoch = 1 } }));
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/volumes/pvc/log", Guard = Guard(current) });

        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/volumes/pvc/log", Guard = Guard(old) }));
        Assert.Equal(1UL, (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/volumes/pvc/log", Guard = Guard(current) })).Epoch);
        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.DeleteFileAsync(new DeleteFileRequest { Path = "/volumes/pvc/log", Guard = Guard(old) }));
        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.DeleteFileAsync(new DeleteFileRequest { Path = "/volumes/pvc/log", Guard = Guard(current + 1) }));
        var stat = await Client.StatFileAsync(new StatFileRequest { Path = "/volumes/pvc/log" });
        Assert.Equal(1UL, stat.Epoch);

        await Client.DeleteFileAsync(new DeleteFileRequest { Path = "/volumes/pvc/log", Guard = Guard(current) });
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.StatFileAsync(new StatFileRequest { Path = "/volumes/pvc/log" }));
    }

    [Fact]
    public async Task DeletingAVolumeFreesItsFiles()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc", SizeBytes = 1 << 20 });
        await Client.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-keep", SizeBytes = 1 << 20 });
        var chunkIds = new List<ulong>();
        foreach (var path in new[] { "/volumes/pvc/log/0001", "/volumes/pvc/checkpoint", "/volumes/pvc-keep/log" })
        {
            await Client.CreateFileAsync(new CreateFileRequest { Path = path });
            var epoch = (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = path })).Epoch;
            var chunk = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = path, Epoch = epoch });
            if (path.StartsWith("/volumes/pvc/", StringComparison.Ordinal))
            {
                chunkIds.Add(chunk.ChunkId);
            }
        }
        await Client.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "pvc" });
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.StatVolumeAsync(new StatVolumeRequest { Name = "pvc" }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.DeleteVolumeAsync(new DeleteVolumeRequest { Name = "pvc" }));
        Assert.Equal(["/volumes/pvc-keep/log"], (await Client.ListFilesAsync(new ListFilesRequest { Path = "/volumes", Recursive = true })).Entries.Select(e => e.Path));
        var pending = (await Client.HeartbeatAsync(new HeartbeatRequest { Id = "cs-0" })).DeleteChunks;
        Assert.Equal(chunkIds.Order(), pending.Order());
    }
}
