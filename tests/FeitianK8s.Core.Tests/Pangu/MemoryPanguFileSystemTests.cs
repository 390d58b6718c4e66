using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Tests.Pangu;

public sealed class MemoryPanguFileSystemTests
{
    [Fact]
    public async Task AppendsAreReadBackInOrder()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/a/b/file", replicas: 2);
        await using var appender = await fs.OpenForAppendAsync("/a/b/file");
        Assert.Equal(0, await appender.AppendAsync(new byte[] { 1, 2, 3 }));
        Assert.Equal(3, await appender.AppendAsync(new byte[] { 4, 5 }, durable: true));
        Assert.Equal(5, appender.Length);
        Assert.Equal(1, fs.DurableAppendCount);

        await using var reader = await fs.OpenForReadAsync("/a/b/file");
        var buffer = new byte[10];
        Assert.Equal(4, await reader.ReadAsync(1, buffer));
        Assert.Equal(new byte[] { 2, 3, 4, 5 }, buffer[..4]);
        Assert.Equal(0, await reader.ReadAsync(5, buffer));
        var info = await fs.StatAsync("/a/b/file");
        Assert.Equal((5L, 2), (info!.Length, info.Replicas));
    }

    [Fact]
    public async Task NewAppenderFencesTheOldOne()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/f");
        var first = await fs.OpenForAppendAsync("/f");
        await first.AppendAsync(new byte[] { 1 });
        var second = await fs.OpenForAppendAsync("/f");
        Assert.True(second.Epoch > first.Epoch);
        var fenced = await Assert.ThrowsAsync<FencedException>(() => first.AppendAsync(new byte[] { 2 }));
        Assert.Equal(first.Epoch, fenced.Epoch);
        await Assert.ThrowsAsync<FencedException>(() => first.FlushAsync());
        Assert.Equal(1, await second.AppendAsync(new byte[] { 3 }));
        Assert.Equal(2, (await fs.StatAsync("/f"))!.Length);
    }

    [Fact]
    public async Task VolumeGuardsAreCheckedAgainstTheVolumeEpoch()
    {
        ulong epoch = 5;
        var fs = new MemoryPanguFileSystem(name => name == "v" ? epoch : null);
        await fs.CreateAsync("/v/x", guard: new PanguVolumeGuard("v", 5));
        epoch = 6;
        await Assert.ThrowsAsync<FencedException>(() => fs.CreateAsync("/v/y", guard: new PanguVolumeGuard("v", 5)));
        await Assert.ThrowsAsync<FencedException>(() => fs.DeleteAsync("/v/x", guard: new PanguVolumeGuard("v", 5)));
        await Assert.ThrowsAsync<FencedException>(() => fs.OpenForAppendAsync("/v/x", guard: new PanguVolumeGuard("v", 5)));
        var missing = await Assert.ThrowsAsync<PanguException>(() => fs.CreateAsync("/w/y", guard: new PanguVolumeGuard("w", 1)));
        Assert.Equal(PanguErrorKind.NotFound, missing.Kind);
        Assert.NotNull(await fs.StatAsync("/v/x"));
        Assert.Null(await fs.StatAsync("/v/y"));
        await fs.DeleteAsync("/v/x", guard: new PanguVolumeGuard("v", 6));
    }

    [Fact]
    public async Task NamespaceErrorsHaveKindsAndChangeNothing()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/d/f");
        Assert.Equal(PanguErrorKind.AlreadyExists, (await Assert.ThrowsAsync<PanguException>(() => fs.CreateAsync("/d/f"))).Kind);
        Assert.Equal(PanguErrorKind.AlreadyExists, (await Assert.ThrowsAsync<PanguException>(() => fs.CreateAsync("/d"))).Kind);
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => fs.DeleteAsync("/d/g"))).Kind);
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => fs.OpenForReadAsync("/nope"))).Kind);
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => fs.CreateAsync("relative"))).Kind);
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => fs.CreateAsync("/a//b"))).Kind);
        Assert.Equal(["/d/f"], (await fs.ListAsync("/", recursive: true)).Select(e => e.Path));
    }

    [Fact]
    public async Task ListRenameAndDelete()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/v/log/1");
        await fs.CreateAsync("/v/log/2");
        await fs.CreateAsync("/v/top");
        Assert.Equal(
            [new PanguDirectoryEntry("/v/log", true, 0), new PanguDirectoryEntry("/v/top", false, 0)],
            await fs.ListAsync("/v"));
        Assert.Equal(["/v/log/1", "/v/log/2", "/v/top"], (await fs.ListAsync("/v", recursive: true)).Select(e => e.Path));
        await fs.RenameAsync("/v/top", "/v/log/3");
        Assert.Equal(PanguErrorKind.AlreadyExists, (await Assert.ThrowsAsync<PanguException>(() => fs.RenameAsync("/v/log/1", "/v/log/2"))).Kind);
        await fs.DeleteAsync("/v/log/1");
        Assert.Equal(["/v/log/2", "/v/log/3"], (await fs.ListAsync("/v/log")).Select(e => e.Path));
    }

    [Fact]
    public async Task InjectedFailuresLandNothingAndTornAppendsLeaveAPrefix()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/f");
        await using var appender = await fs.OpenForAppendAsync("/f");
        await appender.AppendAsync(new byte[] { 1, 2 });
        fs.FailNextAppends(2);
        for (var i = 0; i < 2; i++)
        {
            var error = await Assert.ThrowsAsync<PanguException>(() => appender.AppendAsync(new byte[] { 9 }));
            Assert.Equal(PanguErrorKind.Unavailable, error.Kind);
        }
        Assert.Equal(2, appender.Length);
        Assert.Equal(2, await appender.AppendAsync(new byte[] { 3 }));

        fs.AppendPartialForTest("/f", [7, 7]);
        var buffer = new byte[5];
        Assert.Equal(5, await appender.ReadAsync(0, buffer));
        Assert.Equal(new byte[] { 1, 2, 3, 7, 7 }, buffer);
    }

    [Fact]
    public async Task DeletedFileCannotBeReadOrAppended()
    {
        var fs = new MemoryPanguFileSystem();
        await fs.CreateAsync("/f");
        var appender = await fs.OpenForAppendAsync("/f");
        var reader = await fs.OpenForReadAsync("/f");
        await fs.DeleteAsync("/f");
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => appender.AppendAsync(new byte[] { 1 }))).Kind);
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => reader.ReadAsync(0, new byte[1]))).Kind);
    }
}
