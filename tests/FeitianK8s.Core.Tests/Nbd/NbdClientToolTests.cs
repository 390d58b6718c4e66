using System.Security.Cryptography;
using System.Text.Json;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>Real NBD clients (libnbd's nbdinfo/nbdcopy, qemu-io, fio) against the server on loopback TCP and a unix socket.</summary>
public sealed class NbdClientToolTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Nbdinfo_reports_size_block_sizes_and_flags_over_tcp_and_unix_socket()
    {
        var disk = new MemoryBlockDevice("disk", 64L << 20);
        var readOnly = new MemoryBlockDevice("frozen", 8L << 20, readOnly: true, supportsMultiConnection: false);
        await using var host = await NbdTestHost.StartAsync(output, [disk, readOnly]);

        foreach (string uri in new[] { host.TcpUri("disk"), host.UnixUri("disk") })
        {
            var export = await NbdinfoExportAsync(uri);
            Assert.Equal("disk", export.GetProperty("export-name").GetString());
            Assert.Equal(64L << 20, export.GetProperty("export-size").GetInt64());
            Assert.Equal(1, export.GetProperty("block_size_minimum").GetInt64());
            Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt64());
            Assert.Equal(32L << 20, export.GetProperty("block_size_maximum").GetInt64());
            Assert.False(export.GetProperty("is_read_only").GetBoolean());
            Assert.True(export.GetProperty("can_flush").GetBoolean());
            Assert.True(export.GetProperty("can_fua").GetBoolean());
            Assert.True(export.GetProperty("can_trim").GetBoolean());
            Assert.True(export.GetProperty("can_zero").GetBoolean());
            Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        }

        var frozen = await NbdinfoExportAsync(host.TcpUri("frozen"));
        Assert.Equal(8L << 20, frozen.GetProperty("export-size").GetInt64());
        Assert.True(frozen.GetProperty("is_read_only").GetBoolean());
        Assert.False(frozen.GetProperty("can_multi_conn").GetBoolean());
        Assert.False(frozen.GetProperty("can_trim").GetBoolean());
        Assert.False(frozen.GetProperty("can_zero").GetBoolean());

        var list = await ExternalProcess.RunCheckedAsync(output, "nbdinfo", ["--list", "--json", $"nbd://127.0.0.1:{host.Port}"], ToolTimeout);
        using var listed = JsonDocument.Parse(list.StandardOutput);
        var names = listed.RootElement.GetProperty("exports").EnumerateArray().Select(e => e.GetProperty("export-name").GetString()!).Order().ToArray();
        Assert.Equal(["disk", "frozen"], names);
    }

    [Fact]
    public async Task Nbdinfo_on_unknown_export_fails_cleanly()
    {
        await using var host = await NbdTestHost.StartAsync(output, [new MemoryBlockDevice("disk", 1 << 20)]);
        var result = await ExternalProcess.RunAsync(output, "nbdinfo", [host.TcpUri("nope")], ToolTimeout);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal(0, await WaitForNoConnectionsAsync(host.Server));
    }

    [Fact]
    public async Task Nbdcopy_round_trips_a_64MiB_random_image_through_a_file_device()
    {
        string dir = Directory.CreateTempSubdirectory("feitian-nbdcopy-").FullName;
        try
        {
            const long size = 64L << 20;
            string source = Path.Combine(dir, "source.img");
            string back = Path.Combine(dir, "back.img");
            string backing = Path.Combine(dir, "volume.img");
            await WriteRandomFileAsync(source, size);
            using var device = new FileBlockDevice("vol", backing, size);
            await using var host = await NbdTestHost.StartAsync(output, [device]);

            await ExternalProcess.RunCheckedAsync(output, "nbdcopy", ["--flush", source, host.TcpUri("vol")], ToolTimeout);
            await ExternalProcess.RunCheckedAsync(output, "nbdcopy", [host.UnixUri("vol"), back], ToolTimeout);

            string expected = await Sha256Async(source);
            Assert.Equal(expected, await Sha256Async(back));
            Assert.Equal(expected, await Sha256Async(backing));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Qemu_io_unaligned_overlapping_discard_and_write_zeroes_read_back_correctly()
    {
        const long size = 4L << 20;
        var disk = new MemoryBlockDevice("disk", size);
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        var model = new byte[size];

        string[] commands =
        [
            "write -P 0xaa 1 5000",
            "write -P 0xbb 4000 3000",
            "read -P 0xaa 1 3999",
            "read -P 0xbb 4000 3000",
            "read -P 0x00 7000 1000",
            "write -P 0xcc 65536 131072",
            "discard 65536 131072",
            "read -P 0x00 65536 131072",
            "write -P 0xdd 290000 100000",
            "write -z 300000 70000",
            "read -P 0xdd 290000 10000",
            "read -P 0x00 300000 70000",
            "read -P 0xdd 370000 20000",
            "write -f -P 0xee 500001 4095",
            "read -P 0xee 500001 4095",
            "write -P 0x5a 4190000 4304",
            "read -P 0x5a 4190000 4304",
            "flush",
        ];
        Fill(model, 1, 5000, 0xaa);
        Fill(model, 4000, 3000, 0xbb);
        Fill(model, 290000, 100000, 0xdd);
        Fill(model, 300000, 70000, 0x00);
        Fill(model, 500001, 4095, 0xee);
        Fill(model, 4190000, 4304, 0x5a);

        var args = new List<string> { "-f", "raw" };
        foreach (string command in commands)
            args.AddRange(["-c", command]);
        args.Add(host.TcpUri("disk"));
        var result = await ExternalProcess.RunCheckedAsync(output, "qemu-io", args, ToolTimeout);
        Assert.DoesNotContain("verification failed", result.StandardOutput + result.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("error", result.StandardOutput + result.StandardError, StringComparison.OrdinalIgnoreCase);

        var actual = new byte[size];
        await disk.ReadAsync(0, actual);
        Assert.True(model.AsSpan().SequenceEqual(actual), $"device differs from the model at offset {FirstDifference(model, actual)}");
        Assert.True(disk.FuaWriteCount >= 1, "the FUA write reached the device as FUA");
        Assert.True(disk.FlushCount >= 1, "flush reached the device");
    }

    [Fact]
    public async Task Fio_random_4k_writes_at_iodepth_32_verify_with_crc32c()
    {
        var disk = new MemoryBlockDevice("disk", 32L << 20);
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        string dir = host.Directory;
        var result = await ExternalProcess.RunCheckedAsync(output, "fio",
        [
            "--name=nbd-verify", "--ioengine=nbd", $"--uri={host.TcpUri("disk")}",
            "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=32m",
            "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_backlog=1024",
            "--runtime=60", $"--directory={dir}", "--output-format=normal",
        ], TimeSpan.FromSeconds(120));
        Assert.Contains("nbd-verify", result.StandardOutput);
        Assert.DoesNotContain("verify: bad", result.StandardOutput + result.StandardError);
        Assert.Contains("err= 0", result.StandardOutput);
    }

    private async Task<JsonElement> NbdinfoExportAsync(string uri)
    {
        var result = await ExternalProcess.RunCheckedAsync(output, "nbdinfo", ["--json", uri], ToolTimeout);
        using var document = JsonDocument.Parse(result.StandardOutput);
        return document.RootElement.GetProperty("exports")[0].Clone();
    }

    private static async Task<int> WaitForNoConnectionsAsync(NbdServer server)
    {
        for (int i = 0; i < 100 && server.ActiveConnections > 0; i++)
            await Task.Delay(100);
        return server.ActiveConnections;
    }

    internal static async Task WriteRandomFileAsync(string path, long size)
    {
        var buffer = new byte[1 << 20];
        await using var file = File.Create(path);
        for (long done = 0; done < size; done += buffer.Length)
        {
            Random.Shared.NextBytes(buffer);
            await file.WriteAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, size - done)));
        }
    }

    internal static async Task<string> Sha256Async(string path)
    {
        await using var file = File.OpenRead(path);
        return Convert.ToHexString(await SHA256.HashDataAsync(file));
    }

    private static void Fill(byte[] model, int offset, int count, byte value) => model.AsSpan(offset, count).Fill(value);

    internal static long FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
            if (a[i] != b[i])
                return i;
        return a.Length == b.Length ? -1 : n;
    }
}
