using System.Diagnostics;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// A real small filesystem (tmpfs, mounted by the test; tests run as root) filled up by appends:
/// the server answers RESOURCE_EXHAUSTED/disk-full, applies nothing, keeps every acknowledged byte
/// and keeps serving.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public Task Free_space_check_refuses_appends_before_the_disk_is_full() => VerifyFillingTheDiskAsync(reserve: 256 * 1024);

    /// <summary>A negative reserve turns the free-space check off, so the write itself hits ENOSPC and must be rolled back.</summary>
    [Fact]
    public Task Enospc_from_the_write_itself_is_rolled_back() => VerifyFillingTheDiskAsync(reserve: -(1L << 30));

    [Fact]
    public async Task New_chunks_go_to_the_data_dir_with_the_most_free_space()
    {
        using var small = TmpfsMount.Create(_dir.Sub("small"), "2m");
        var large = _dir.Sub("large");
        foreach (var dirs in new[] { new[] { small.Path, large }, new[] { large, small.Path } })
        {
            await using var server = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(dirs));
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
            Assert.True(File.Exists(Path.Combine(large, "chunks", $"{1:x16}.data")));
            Assert.False(File.Exists(Path.Combine(small.Path, "chunks", $"{1:x16}.data")));
            await server.Client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 1 });
        }
    }

    [Fact]
    public async Task Capacity_is_the_size_of_the_data_filesystems_counted_once_and_used_is_what_chunks_hold()
    {
        using var mount = TmpfsMount.Create(_dir.Sub("cap"), "4m");
        await using var master = await RecordingMasterDouble.StartAsync(_loggers);
        var a = Path.Combine(mount.Path, "a");
        var b = Path.Combine(mount.Path, "b");
        var options = ChunkServerUnderTest.OptionsFor(a, b) with { MasterAddress = master.Address, HeartbeatInterval = TimeSpan.FromMilliseconds(100) };
        await using var server = await ChunkServerUnderTest.StartAsync(_loggers, options);
        await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        await server.AppendAsync(1, 1, 0, RandomBytes(10_000, 1));
        // The data plus its checksum file: two slots and the CRCs of two full blocks.
        var used = 10_000ul + (ulong)Storage.ChecksumFileLayout.EntryOffset(2);
        await Eventually.HoldsAsync(() => master.Heartbeats.Any(h => h.ChunkCount == 1 && h.UsedBytes == used), $"a heartbeat with 1 chunk and {used} bytes used");
        Assert.All(master.Heartbeats, h => Assert.Equal(4ul << 20, h.CapacityBytes));
    }

    private async Task VerifyFillingTheDiskAsync(long reserve)
    {
        using var mount = TmpfsMount.Create(_dir.Sub("tmpfs"), "2m");
        var options = ChunkServerUnderTest.OptionsFor(mount.Path) with { DiskReserveBytes = reserve };
        await using var server = await ChunkServerUnderTest.StartAsync(_loggers, options);

        await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        var acknowledged = new MemoryStream();
        RpcException? refusal = null;
        for (var i = 0; i < 100 && refusal is null; i++)
        {
            var piece = RandomBytes(150_001, i);
            try
            {
                await server.AppendAsync(1, 1, (ulong)acknowledged.Length, piece);
                acknowledged.Write(piece);
            }
            catch (RpcException error)
            {
                refusal = error;
            }
        }
        Assert.NotNull(refusal);
        output.WriteLine($"refused after {acknowledged.Length} bytes: {refusal.StatusCode} {refusal.Status.Detail}");
        Assert.Equal(StatusCode.ResourceExhausted, refusal.StatusCode);
        Assert.Equal(ErrorReasons.DiskFull, FeitianStatus.ReasonOf(refusal));
        Assert.True(acknowledged.Length > 0);

        // Nothing of the refused append was applied, in memory or on disk.
        Assert.Equal((ulong)acknowledged.Length, (await server.InfoAsync(1)).Length);
        Assert.Equal(acknowledged.Length, new FileInfo(server.DataFile(1)).Length);
        Assert.Equal(acknowledged.ToArray(), await server.ReadAllAsync(1));

        // Still full: a second try is refused the same way; the server still answers everything else.
        await FailsAsync(StatusCode.ResourceExhausted, ErrorReasons.DiskFull, () => server.AppendAsync(1, 1, (ulong)acknowledged.Length, RandomBytes(600_000, 99)));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => server.InfoAsync(77));
        var sealedAt = await server.Client.SealAsync(new SealRequest { ChunkId = 1, Epoch = 1, Length = (ulong)acknowledged.Length });
        Assert.Equal((ulong)acknowledged.Length, sealedAt.Length);

        // After a restart on the full disk, the acknowledged bytes are all there.
        await server.DisposeAsync();
        await using var restarted = await ChunkServerUnderTest.StartAsync(_loggers, options);
        Assert.Equal(acknowledged.ToArray(), await restarted.ReadAllAsync(1));

        // Freeing space makes appends possible again.
        await restarted.Client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 1 });
        await restarted.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1 });
        var fresh = RandomBytes(100_000, 1000);
        await restarted.AppendAsync(2, 1, 0, fresh, fua: true);
        Assert.Equal(fresh, await restarted.ReadAllAsync(2));
    }
}

/// <summary>A tmpfs of a given size mounted on a directory for one test; unmounted on dispose.</summary>
public sealed class TmpfsMount : IDisposable
{
    private TmpfsMount(string path) => Path = path;

    public string Path { get; }

    public static TmpfsMount Create(string path, string size)
    {
        Run("mount", $"-t tmpfs -o size={size} tmpfs {path}");
        return new TmpfsMount(path);
    }

    public void Dispose() => Run("umount", Path);

    private static void Run(string command, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(command, arguments) { RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command} {arguments} failed ({process.ExitCode}): {error}");
        }
    }
}
