using System.Security.Cryptography;
using FeitianK8s.Core.Block;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>The contract both local devices keep, checked against a byte-array model, plus file persistence.</summary>
public sealed class BlockDeviceTests(ITestOutputHelper output) : IDisposable
{
    private const long Size = 1L << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("feitian-blockdev-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Kinds => new() { "memory", "file" };

    private IBlockDevice Create(string kind, bool readOnly = false) => kind switch
    {
        "memory" => new MemoryBlockDevice("dev", Size, readOnly),
        _ => readOnly
            ? CreateReadOnlyFile()
            : new FileBlockDevice("dev", Path.Combine(_dir, $"{Guid.NewGuid():N}.img"), Size),
    };

    private FileBlockDevice CreateReadOnlyFile()
    {
        string path = Path.Combine(_dir, $"{Guid.NewGuid():N}.img");
        File.WriteAllBytes(path, new byte[Size]);
        return new FileBlockDevice("dev", path, readOnly: true);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Writes_trims_and_zeroes_match_a_byte_model(string kind)
    {
        var device = Create(kind);
        try
        {
            var model = new byte[Size];
            var random = new Random(42);
            for (int i = 0; i < 400; i++)
            {
                long offset = random.NextInt64(Size);
                long length = random.NextInt64(Math.Min(Size - offset, 200_000) + 1);
                switch (random.Next(4))
                {
                    case 0:
                    case 1:
                        var data = RandomNumberGenerator.GetBytes((int)length);
                        await device.WriteAsync(offset, data, fua: random.Next(8) == 0);
                        data.CopyTo(model, offset);
                        break;
                    case 2:
                        await device.TrimAsync(offset, length);
                        model.AsSpan((int)offset, (int)length).Clear();
                        break;
                    default:
                        await device.WriteZeroesAsync(offset, length, fua: false);
                        model.AsSpan((int)offset, (int)length).Clear();
                        break;
                }
            }
            await device.FlushAsync();
            var actual = new byte[Size];
            await device.ReadAsync(0, actual);
            Assert.True(model.AsSpan().SequenceEqual(actual), $"{kind} device differs at {NbdClientToolTests.FirstDifference(model, actual)}");
        }
        finally
        {
            (device as IDisposable)?.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task Out_of_range_and_read_only_are_refused_without_changes(string kind)
    {
        var device = Create(kind);
        var frozen = Create(kind, readOnly: true);
        try
        {
            var outside = await Assert.ThrowsAsync<BlockDeviceException>(() => device.WriteAsync(Size - 10, new byte[11], false).AsTask());
            Assert.Equal(BlockErrorKind.InvalidArgument, outside.Kind);
            Assert.Equal(BlockErrorKind.InvalidArgument, (await Assert.ThrowsAsync<BlockDeviceException>(() => device.ReadAsync(-1, new byte[1]).AsTask())).Kind);
            Assert.Equal(BlockErrorKind.InvalidArgument, (await Assert.ThrowsAsync<BlockDeviceException>(() => device.TrimAsync(Size, 1).AsTask())).Kind);
            Assert.Equal(BlockErrorKind.ReadOnly, (await Assert.ThrowsAsync<BlockDeviceException>(() => frozen.WriteAsync(0, new byte[1], false).AsTask())).Kind);
            Assert.Equal(BlockErrorKind.ReadOnly, (await Assert.ThrowsAsync<BlockDeviceException>(() => frozen.TrimAsync(0, 1).AsTask())).Kind);
            Assert.Equal(BlockErrorKind.ReadOnly, (await Assert.ThrowsAsync<BlockDeviceException>(() => frozen.WriteZeroesAsync(0, 1, false).AsTask())).Kind);

            var all = new byte[Size];
            await device.ReadAsync(0, all);
            Assert.True(all.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        }
        finally
        {
            (device as IDisposable)?.Dispose();
            (frozen as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public async Task File_device_keeps_flushed_data_across_reopen_and_punches_holes()
    {
        string path = Path.Combine(_dir, "persist.img");
        var data = RandomNumberGenerator.GetBytes(300_000);
        long allocatedBeforeTrim, allocatedAfterTrim;
        using (var device = new FileBlockDevice("dev", path, 4L << 20))
        {
            Assert.Equal(4L << 20, new FileInfo(path).Length);
            await device.WriteAsync(1_000_003, data, fua: true);
            await device.WriteAsync(2L << 20, new byte[1 << 20].Select(_ => (byte)7).ToArray(), fua: false);
            await device.FlushAsync();
            allocatedBeforeTrim = await AllocatedBytesAsync(path);
            Assert.True(allocatedBeforeTrim >= (1 << 20) + data.Length, $"only {allocatedBeforeTrim} bytes allocated after writing {(1 << 20) + data.Length}");
            await device.TrimAsync(2L << 20, 1 << 20);
            await device.FlushAsync();
            allocatedAfterTrim = await AllocatedBytesAsync(path);
        }
        output.WriteLine($"allocated {allocatedBeforeTrim} bytes before the trim, {allocatedAfterTrim} after");
        // The trim of an aligned 1 MiB range gave exactly that space back to the filesystem: a hole, not written zeros.
        Assert.True(allocatedBeforeTrim - allocatedAfterTrim >= 1 << 20,
            $"trimming 1 MiB freed only {allocatedBeforeTrim - allocatedAfterTrim} bytes ({allocatedBeforeTrim} -> {allocatedAfterTrim})");
        Assert.Equal(4L << 20, new FileInfo(path).Length);
        using (var reopened = new FileBlockDevice("dev", path))
        {
            Assert.Equal(4L << 20, reopened.Size);
            var back = new byte[data.Length];
            await reopened.ReadAsync(1_000_003, back);
            Assert.Equal(data, back);
            var trimmed = new byte[1 << 20];
            await reopened.ReadAsync(2L << 20, trimmed);
            Assert.True(trimmed.AsSpan().IndexOfAnyExcept((byte)0) < 0, "trimmed range reads as zeros");
        }
        Assert.Equal(allocatedAfterTrim, await AllocatedBytesAsync(path));
    }

    /// <summary>The space the filesystem has allocated to a file (st_blocks × block unit, as `stat` reports it).</summary>
    private async Task<long> AllocatedBytesAsync(string path)
    {
        var stat = await ExternalProcess.RunAsync(output, "stat", ["--format=%b %B", path], TimeSpan.FromSeconds(60));
        Assert.True(stat.ExitCode == 0, $"stat {path} failed (exit {stat.ExitCode})");
        var fields = stat.StandardOutput.Trim().Split(' ');
        return long.Parse(fields[0], System.Globalization.CultureInfo.InvariantCulture) * long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Memory_device_frees_wholly_trimmed_chunks()
    {
        var device = new MemoryBlockDevice("dev", Size);
        await device.WriteAsync(0, new byte[4 * MemoryBlockDevice.ChunkSize].Select(_ => (byte)1).ToArray(), false);
        Assert.Equal(4, device.AllocatedChunks);
        await device.TrimAsync(100, 3 * MemoryBlockDevice.ChunkSize);
        Assert.Equal(2, device.AllocatedChunks); // chunks 1 and 2 wholly covered; 0 and 3 partially
    }

    [Fact]
    public async Task Provider_lists_and_opens_exports_by_name()
    {
        var provider = new DictionaryBlockDeviceProvider(new MemoryBlockDevice("b", 512), new MemoryBlockDevice("a", 512));
        Assert.Equal(["a", "b"], await provider.ListAsync());
        Assert.NotNull(await provider.OpenAsync("a"));
        Assert.Null(await provider.OpenAsync("c"));
        Assert.Throws<ArgumentException>(() => provider.Add(new MemoryBlockDevice("a", 512)));
        Assert.True(provider.Remove("a"));
        Assert.Equal(["b"], await provider.ListAsync());
    }
}
