using System.Collections.Concurrent;
using System.Security.Cryptography;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// kill -9 of the process serving NBD while the write pipeline is full, with an ext4 filesystem on the
/// volume. The filesystem (built by mkfs.ext4 -d, written through NBD and flushed) is being rewritten
/// block by block with its own bytes while fresh writes stream to the rest of the volume, sixteen
/// requests in flight, when the process dies. After the restart e2fsck must find the filesystem clean,
/// every file must read back whole, and every acknowledged write outside it must be there.
/// </summary>
public sealed class NbdPipelineCrashExt4Tests(ITestOutputHelper output)
{
    private const int BlockSize = 64 * 1024;
    private const int FsBytes = 32 << 20;
    private const int TailBlocks = 256;     // the 16 MiB after the filesystem, each written at most once
    private const int Window = 16;
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Kill_9_with_the_pipeline_full_leaves_ext4_fsck_clean_and_every_acknowledged_write_readable()
    {
        foreach (var tool in new[] { "mkfs.ext4", "e2fsck", "debugfs" })
        {
            Assert.True(ExternalTool.Which(tool) is not null, $"{tool} is not installed (test.sh installs e2fsprogs)");
        }
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("fs", $"{(FsBytes + (TailBlocks * BlockSize)) >> 20}MiB");
        var (image, files) = await BuildImageAsync(cluster.Dir);

        var acknowledged = new ConcurrentDictionary<int, bool>();
        var errors = new ConcurrentQueue<string>();
        var killAfter = 30 + Random.Shared.Next(120);
        var killNow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var connectionLost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var killer = Task.Run(async () =>
        {
            await killNow.Task;
            await cluster.Up.KillAsync();
        });
        var issued = 0;
        await using (var client = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "fs"))
        {
            // The filesystem goes in whole and is flushed: from here on it is acknowledged.
            await WriteWindowedAsync(client, Enumerable.Range(0, FsBytes / BlockSize).Select(b => ((long)b * BlockSize, (ReadOnlyMemory<byte>)image.AsMemory(b * BlockSize, BlockSize))), errors);
            Assert.Empty(errors);
            Assert.Equal(0u, (await client.FlushAsync()).Error);

            // Pipeline full: filesystem blocks rewritten with their own bytes interleaved with fresh tail writes.
            using var window = new SemaphoreSlim(Window);
            var inFlight = new List<Task>();
            for (var k = 0; k < TailBlocks && !connectionLost.Task.IsCompleted && errors.IsEmpty; k++)
            {
                foreach (var (offset, data, tail) in new[]
                         {
                             ((long)(k % (FsBytes / BlockSize)) * BlockSize, (ReadOnlyMemory<byte>)image.AsMemory((k % (FsBytes / BlockSize)) * BlockSize, BlockSize), -1),
                             (FsBytes + ((long)k * BlockSize), Pattern(k), k),
                         })
                {
                    await window.WaitAsync();
                    issued = k + 1;
                    inFlight.Add(Task.Run(async () =>
                    {
                        try
                        {
                            var reply = await client.WriteAsync(offset, data);
                            if (reply.Error != 0)
                            {
                                errors.Enqueue($"write at {offset} failed with NBD error {reply.Error}");
                            }
                            else if (tail >= 0)
                            {
                                acknowledged[tail] = true;
                                if (acknowledged.Count >= killAfter)
                                {
                                    killNow.TrySetResult();
                                }
                            }
                        }
                        catch (IOException)
                        {
                            connectionLost.TrySetResult();
                        }
                        finally
                        {
                            window.Release();
                        }
                    }));
                }
            }
            await Task.WhenAll(inFlight);
        }
        killNow.TrySetResult();
        await killer;
        output.WriteLine($"issued {issued} tail writes, {acknowledged.Count} acknowledged before the kill (due after {killAfter})");
        Assert.Empty(errors);
        Assert.True(connectionLost.Task.IsCompleted, "the workload ended without losing its connection: the kill never cut it");
        Assert.True(cluster.Up.HasExited, "feitian up is still running after kill -9");

        await cluster.CrashAndRestartAsync();
        var copy = cluster.Dir.Combine("after.img");
        await using (var reader = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "fs"))
        {
            await using (var file = File.Create(copy))
            {
                for (var offset = 0L; offset < FsBytes; offset += BlockSize)
                {
                    await file.WriteAsync(await reader.ReadCheckedAsync(offset, BlockSize));
                }
            }
            for (var k = 0; k < issued; k++)
            {
                var data = await reader.ReadCheckedAsync(FsBytes + ((long)k * BlockSize), BlockSize);
                if (acknowledged.ContainsKey(k))
                {
                    Assert.True(Pattern(k).Span.SequenceEqual(data), $"acknowledged tail write {k} is not on the volume after the crash");
                }
                else
                {
                    Assert.True(Pattern(k).Span.SequenceEqual(data) || data.All(b => b == 0), $"unacknowledged tail write {k} landed by half");
                }
            }
        }
        var fsck = await ExternalTool.RunAsync(output, "e2fsck", ["-fn", copy], ToolTimeout);
        Assert.True(fsck.ExitCode == 0, $"e2fsck -fn found problems (exit {fsck.ExitCode}): {fsck.StandardOutput}");
        var dumped = Directory.CreateDirectory(cluster.Dir.Combine("dumped")).FullName;
        foreach (var (name, hash) in files)
        {
            var target = Path.Combine(dumped, name);
            await ExternalTool.RunCheckedAsync(output, "debugfs", ["-R", $"dump /{name} {target}", copy], ToolTimeout);
            Assert.True(File.Exists(target), $"{name} could not be read from the filesystem after the crash");
            Assert.True(hash == Convert.ToHexString(SHA256.HashData(await File.ReadAllBytesAsync(target))), $"{name} changed across the crash");
        }
        output.WriteLine($"e2fsck clean; {files.Count} files and {acknowledged.Count} acknowledged tail writes intact");
    }

    /// <summary>An ext4 image of <see cref="FsBytes"/> populated from a directory of random files (mkfs.ext4 -d), with their hashes.</summary>
    private async Task<(byte[] Image, Dictionary<string, string> Files)> BuildImageAsync(TempDirectory dir)
    {
        var source = Directory.CreateDirectory(dir.Combine("source")).FullName;
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        var random = new Random(1234);
        for (var i = 0; i < 24; i++)
        {
            var data = new byte[i == 0 ? 0 : random.Next(1, 900_000)];
            random.NextBytes(data);
            var name = $"file{i}.bin";
            await File.WriteAllBytesAsync(Path.Combine(source, name), data);
            files[name] = Convert.ToHexString(SHA256.HashData(data));
        }
        var path = dir.Combine("fs.img");
        await using (var image = File.Create(path))
        {
            image.SetLength(FsBytes);
        }
        await ExternalTool.RunCheckedAsync(output, "mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", source, path], ToolTimeout);
        var bytes = await File.ReadAllBytesAsync(path);
        Assert.Equal(FsBytes, bytes.Length);
        return (bytes, files);
    }

    private static async Task WriteWindowedAsync(NbdWireClient client, IEnumerable<(long Offset, ReadOnlyMemory<byte> Data)> writes, ConcurrentQueue<string> errors)
    {
        using var window = new SemaphoreSlim(Window);
        var inFlight = new List<Task>();
        foreach (var (offset, data) in writes)
        {
            await window.WaitAsync();
            inFlight.Add(Task.Run(async () =>
            {
                try
                {
                    var reply = await client.WriteAsync(offset, data);
                    if (reply.Error != 0)
                    {
                        errors.Enqueue($"write at {offset} failed with NBD error {reply.Error}");
                    }
                }
                finally
                {
                    window.Release();
                }
            }));
        }
        await Task.WhenAll(inFlight);
    }

    private static ReadOnlyMemory<byte> Pattern(int write)
    {
        var data = new byte[BlockSize];
        new Random((write * 7919) + 23).NextBytes(data);
        BitConverter.TryWriteBytes(data, write);
        return data;
    }
}
