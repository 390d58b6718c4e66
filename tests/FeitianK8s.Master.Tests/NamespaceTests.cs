using FeitianK8s.Core.Common;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

public sealed class NamespaceTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private RunningMaster _master = null!;
    private Proto.Master.Master.MasterClient Client => _master.Client;

    public async Task InitializeAsync()
    {
        _master = await RunningMaster.StartAsync(_dir.Path, output, o => new MasterOptions
        {
            DataDirectory = o.DataDirectory,
            HeartbeatTimeout = o.HeartbeatTimeout,
            ChunkSizeBytes = 1 << 20,
        });
        await _master.RegisterServersAsync(6, 3);
    }

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task FileLifecycle()
    {
        var created = await Client.CreateFileAsync(new CreateFileRequest { Path = "/images/a.img" });
        Assert.Equal(3u, created.Replicas);
        Assert.Equal(0UL, created.Length);
        Assert.True(created.CreatedUnixMs > 0);

        var open = await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/images/a.img", ClientNode = "node-1" });
        Assert.Equal(1UL, open.Epoch);
        Assert.Equal(1UL, open.File.Epoch);

        var first = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = 1, PreferredNode = "node-1" });
        Assert.Equal(3, first.Replicas.Count);
        Assert.Equal("node-1", first.Replicas[0].Node);
        Assert.Equal(3, first.Replicas.Select(r => r.Rack).Distinct().Count());
        Assert.Equal(3, first.Replicas.Select(r => r.Node).Distinct().Count());
        Assert.All(first.Replicas, r => Assert.StartsWith("http://127.0.0.1:", r.Address));
        Assert.False(first.PlacementDegraded);
        Assert.Equal(0UL, first.FileOffset);
        Assert.Equal(1UL << 20, first.MaxLength);

        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/images/a.img", Epoch = 1, ChunkId = first.ChunkId, Length = 4096 });
        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/images/a.img", Epoch = 1, ChunkId = first.ChunkId, Length = 1000 });
        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/images/a.img", Epoch = 1, ChunkId = first.ChunkId, Length = 8192, Sealed = true });
        var second = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = 1 });
        Assert.True(second.ChunkId > first.ChunkId);
        Assert.Equal(8192UL, second.FileOffset);
        Assert.Equal("node-1", second.Replicas[0].Node);
        var elsewhere = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/images/a.img", Epoch = 1, PreferredNode = "node-4" });
        Assert.Equal("node-4", elsewhere.Replicas[0].Node);
        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/images/a.img", Epoch = 1, ChunkId = second.ChunkId, Length = 100, Sealed = true });

        var stat = await Client.StatFileAsync(new StatFileRequest { Path = "/images/a.img" });
        Assert.Equal(8292UL, stat.Length);
        Assert.Equal(3, stat.Chunks.Count);
        Assert.True(stat.Chunks[0].Sealed);
        Assert.True(stat.Chunks[1].Sealed);
        Assert.False(stat.Chunks[2].Sealed);
        Assert.Equal(8192UL, stat.Chunks[1].FileOffset);
        Assert.Equal(8292UL, stat.Chunks[2].FileOffset);

        await Client.RenameFileAsync(new RenameFileRequest { From = "/images/a.img", To = "/images/b.img" });
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.StatFileAsync(new StatFileRequest { Path = "/images/a.img" }));
        Assert.Equal(8292UL, (await Client.StatFileAsync(new StatFileRequest { Path = "/images/b.img" })).Length);

        await Client.DeleteFileAsync(new DeleteFileRequest { Path = "/images/b.img" });
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.StatFileAsync(new StatFileRequest { Path = "/images/b.img" }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.DeleteFileAsync(new DeleteFileRequest { Path = "/images/b.img" }));
    }

    [Fact]
    public async Task ListShowsDirectChildrenOrEveryFile()
    {
        foreach (var path in new[] { "/a/x", "/a/b/y", "/a/b/c/z", "/a/b.txt", "/top" })
        {
            await Client.CreateFileAsync(new CreateFileRequest { Path = path, Replicas = 1 });
        }
        var root = await Client.ListFilesAsync(new ListFilesRequest { Path = "/" });
        Assert.Equal(["/a:dir", "/top:file"], root.Entries.Select(Describe));
        var emptyRoot = await Client.ListFilesAsync(new ListFilesRequest { Path = "" });
        Assert.Equal(root.Entries, emptyRoot.Entries);

        var a = await Client.ListFilesAsync(new ListFilesRequest { Path = "/a" });
        Assert.Equal(["/a/b:dir", "/a/b.txt:file", "/a/x:file"], a.Entries.Select(Describe));
        var recursive = await Client.ListFilesAsync(new ListFilesRequest { Path = "/a/", Recursive = true });
        Assert.Equal(["/a/b.txt", "/a/b/c/z", "/a/b/y", "/a/x"], recursive.Entries.Select(e => e.Path));
        Assert.All(recursive.Entries, e => Assert.False(e.IsDirectory));

        Assert.Empty((await Client.ListFilesAsync(new ListFilesRequest { Path = "/nothing/here" })).Entries);
        await RpcAssert.Fails(StatusCode.FailedPrecondition, MasterErrorReasons.NotADirectory, () => Client.ListFilesAsync(new ListFilesRequest { Path = "/top" }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.ListFilesAsync(new ListFilesRequest { Path = "/a/../b" }));

        static string Describe(DirectoryEntry e) => $"{e.Path}:{(e.IsDirectory ? "dir" : "file")}";
    }

    [Theory]
    [InlineData("")]
    [InlineData("relative/path")]
    [InlineData("/")]
    [InlineData("/a//b")]
    [InlineData("/a/./b")]
    [InlineData("/a/../b")]
    [InlineData("/a/b/")]
    [InlineData("/a/\0b")]
    public async Task InvalidPathsAreRefused(string path)
    {
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.CreateFileAsync(new CreateFileRequest { Path = path }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.StatFileAsync(new StatFileRequest { Path = path }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.RenameFileAsync(new RenameFileRequest { From = "/ok", To = path }));
        Assert.Empty((await Client.ListFilesAsync(new ListFilesRequest { Path = "/", Recursive = true })).Entries);
    }

    [Fact]
    public async Task HugeAndConflictingPathsAreRefused()
    {
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.CreateFileAsync(new CreateFileRequest { Path = "/" + new string('x', 100_000) }));
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => Client.CreateFileAsync(new CreateFileRequest { Path = "/f", Replicas = 6 }));
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/d/f" });
        await RpcAssert.Fails(StatusCode.AlreadyExists, ErrorReasons.AlreadyExists, () => Client.CreateFileAsync(new CreateFileRequest { Path = "/d/f" }));
        await RpcAssert.Fails(StatusCode.FailedPrecondition, MasterErrorReasons.IsDirectory, () => Client.CreateFileAsync(new CreateFileRequest { Path = "/d" }));
        await RpcAssert.Fails(StatusCode.FailedPrecondition, MasterErrorReasons.ParentIsFile, () => Client.CreateFileAsync(new CreateFileRequest { Path = "/d/f/g" }));
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/other" });
        await RpcAssert.Fails(StatusCode.AlreadyExists, ErrorReasons.AlreadyExists, () => Client.RenameFileAsync(new RenameFileRequest { From = "/other", To = "/d/f" }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.RenameFileAsync(new RenameFileRequest { From = "/missing", To = "/new" }));
        Assert.Equal(["/d/f", "/other"], (await Client.ListFilesAsync(new ListFilesRequest { Recursive = true })).Entries.Select(e => e.Path));
    }

    [Fact]
    public async Task StaleEpochsAreFenced()
    {
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/f" });
        var writerA = await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/f" });
        var chunk = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f", Epoch = writerA.Epoch });
        var writerB = await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/f" });
        Assert.True(writerB.Epoch > writerA.Epoch);

        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f", Epoch = writerA.Epoch }));
        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = writerA.Epoch, ChunkId = chunk.ChunkId, Length = 10 }));
        await RpcAssert.Fails(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch,
            () => Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = writerB.Epoch + 5, ChunkId = chunk.ChunkId, Length = 10 }));

        // The new writer seals the old chunk and continues; nothing from A landed.
        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = writerB.Epoch, ChunkId = chunk.ChunkId, Length = 0, Sealed = true });
        var stat = await Client.StatFileAsync(new StatFileRequest { Path = "/f" });
        Assert.Equal(0UL, stat.Length);
        Assert.Equal(writerB.Epoch, stat.Epoch);
        Assert.Single(stat.Chunks);
    }

    [Fact]
    public async Task ConcurrentWritersGetDistinctChunksAndConsistentFiles()
    {
        const int files = 8;
        const int chunksPerFile = 10;
        await Parallel.ForEachAsync(Enumerable.Range(0, files), async (f, ct) =>
        {
            var path = $"/parallel/{f}";
            await Client.CreateFileAsync(new CreateFileRequest { Path = path }, cancellationToken: ct);
            var epoch = (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = path }, cancellationToken: ct)).Epoch;
            for (var c = 0; c < chunksPerFile; c++)
            {
                var chunk = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = path, Epoch = epoch }, cancellationToken: ct);
                await Client.CommitChunkAsync(new CommitChunkRequest { Path = path, Epoch = epoch, ChunkId = chunk.ChunkId, Length = 1000, Sealed = true }, cancellationToken: ct);
            }
        });
        var all = new List<ulong>();
        for (var f = 0; f < files; f++)
        {
            var stat = await Client.StatFileAsync(new StatFileRequest { Path = $"/parallel/{f}" });
            Assert.Equal((ulong)(1000 * chunksPerFile), stat.Length);
            Assert.Equal(Enumerable.Range(0, chunksPerFile).Select(i => (ulong)(1000 * i)), stat.Chunks.Select(c => c.FileOffset));
            all.AddRange(stat.Chunks.Select(c => c.ChunkId));
        }
        Assert.Equal(files * chunksPerFile, all.Distinct().Count());
    }

    [Fact]
    public async Task CommitErrorsChangeNothing()
    {
        await Client.CreateFileAsync(new CreateFileRequest { Path = "/f" });
        var epoch = (await Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/f" })).Epoch;
        var chunk = await Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f", Epoch = epoch });
        await Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = epoch, ChunkId = chunk.ChunkId, Length = 500 });
        await RpcAssert.Fails(StatusCode.InvalidArgument, ErrorReasons.TooLarge,
            () => Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = epoch, ChunkId = chunk.ChunkId, Length = (1 << 20) + 1 }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.CommitChunkAsync(new CommitChunkRequest { Path = "/f", Epoch = epoch, ChunkId = 987654, Length = 1 }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound,
            () => Client.CommitChunkAsync(new CommitChunkRequest { Path = "/nope", Epoch = epoch, ChunkId = chunk.ChunkId, Length = 1 }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.OpenForAppendAsync(new OpenForAppendRequest { Path = "/nope" }));
        await RpcAssert.Fails(StatusCode.NotFound, ErrorReasons.NotFound, () => Client.AllocateChunkAsync(new AllocateChunkRequest { Path = "/nope" }));
        Assert.Equal(500UL, (await Client.StatFileAsync(new StatFileRequest { Path = "/f" })).Length);
    }
}
