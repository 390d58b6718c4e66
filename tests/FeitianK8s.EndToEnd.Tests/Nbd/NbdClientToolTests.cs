using System.Text.Json;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>Real NBD clients (nbdinfo, nbdcopy, qemu-io, fio) against `feitian up`.</summary>
public sealed class NbdClientToolTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task Nbdinfo_reports_size_and_flags_and_sees_a_resize()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("info", "64MiB");

        var export = await NbdinfoAsync(cluster.Up.NbdUri("info"));
        Assert.Equal(64L << 20, export.GetProperty("export-size").GetInt64());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        foreach (var flag in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn" })
        {
            Assert.True(export.GetProperty(flag).GetBoolean(), $"{flag} should be advertised");
        }
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());

        await cluster.Up.RunCliCheckedAsync("volume", "resize", "info", "--size", "128MiB");
        var grown = await NbdinfoAsync(cluster.Up.NbdUri("info"));
        Assert.Equal(128L << 20, grown.GetProperty("export-size").GetInt64());

        var unix = await ExternalTool.RunCheckedAsync(output, "nbdinfo", ["--size", $"nbd+unix:///info?socket={cluster.Up.UnixSocketPath}"], ToolTimeout);
        Assert.Equal((128L << 20).ToString(), unix.StandardOutput.Trim());
    }

    [Fact]
    public async Task Nbdcopy_of_a_256MiB_random_image_in_and_out_is_identical()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("copy", "256MiB");
        var image = cluster.Dir.Combine("in.img");
        var back = cluster.Dir.Combine("out.img");
        await File.WriteAllBytesAsync(image, TestData.Random(256 << 20, seed: 256));

        await ExternalTool.RunCheckedAsync(output, "nbdcopy", ["--flush", image, cluster.Up.NbdUri("copy")], ToolTimeout);
        await ExternalTool.RunCheckedAsync(output, "nbdcopy", [cluster.Up.NbdUri("copy"), back], ToolTimeout);

        Assert.Equal(256L << 20, new FileInfo(back).Length);
        Assert.Equal(await Sha256FileAsync(image), await Sha256FileAsync(back));
    }

    [Fact]
    public async Task Qemu_io_unaligned_and_overlapping_writes_and_discard_read_back_exactly()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("qemu", "16MiB");
        var uri = cluster.Up.NbdUri("qemu");
        var model = new byte[16 << 20];

        var writes = new (byte Pattern, long Offset, int Length)[]
        {
            (0x11, 1000, 5000),          // unaligned both ends
            (0x22, 3000, 10000),         // overlaps the tail of the first
            (0x33, 2500, 100),           // inside both, splits an extent
            (0x44, 65536, 131072),       // aligned, later partly discarded
            (0x55, 4095, 8194),          // straddles three 4 KiB blocks
            (0x66, (16 << 20) - 777, 777), // the last bytes of the volume
        };
        var commands = new List<string>();
        foreach (var (pattern, offset, length) in writes)
        {
            commands.Add($"write -P 0x{pattern:x2} {offset} {length}");
            model.AsSpan((int)offset, length).Fill(pattern);
        }
        commands.Add("discard 73728 16384");
        model.AsSpan(73728, 16384).Clear();
        commands.Add("write -z 131072 4096");
        model.AsSpan(131072, 4096).Clear();
        commands.Add("flush");
        commands.Add("read -P 0x11 1000 1500");
        commands.Add("read -P 0x33 2500 100");
        commands.Add("read -P 0x11 2600 400");
        commands.Add("read -P 0x22 3000 1095");
        commands.Add("read -P 0x55 4095 8194");
        commands.Add("read -P 0x22 12289 711");
        commands.Add("read -P 0 13000 52536");
        commands.Add("read -P 0x44 65536 8192");
        commands.Add("read -P 0 73728 16384");
        commands.Add("read -P 0x44 90112 40960");
        commands.Add("read -P 0 131072 4096");
        commands.Add("read -P 0x44 135168 61440");
        commands.Add($"read -P 0x66 {(16 << 20) - 777} 777");

        var result = await ExternalTool.RunAsync(output, "qemu-io", ["-f", "raw", .. commands.SelectMany(c => new[] { "-c", c }), uri], ToolTimeout);
        Assert.True(result.Succeeded, $"qemu-io exited {result.ExitCode}: {result.StandardError}");
        Assert.DoesNotContain("failed", result.StandardOutput + result.StandardError, StringComparison.OrdinalIgnoreCase);

        // Independently of qemu-io's own checks, the whole volume equals the model.
        await using var client = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "qemu");
        for (var offset = 0; offset < model.Length; offset += 1 << 20)
        {
            var data = await client.ReadCheckedAsync(offset, 1 << 20);
            Assert.True(model.AsSpan(offset, 1 << 20).SequenceEqual(data), $"volume differs from the model in the MiB at {offset}");
        }
    }

    [Fact]
    public async Task Fio_4KiB_random_writes_at_iodepth_32_verify_with_crc32c()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("fio", "64MiB");

        var result = await ExternalTool.RunAsync(output, "fio",
        [
            "--name=randwrite-verify", "--ioengine=nbd", $"--uri={cluster.Up.NbdUri("fio")}",
            "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=16M", "--runtime=60",
            "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--output-format=json",
        ], ToolTimeout);
        Assert.True(result.Succeeded, $"fio exited {result.ExitCode}: {result.StandardError}");
        using var json = JsonDocument.Parse(result.StandardOutput[result.StandardOutput.IndexOf('{')..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        Assert.Equal(0, job.GetProperty("error").GetInt32());
        Assert.Equal(16L << 20, job.GetProperty("write").GetProperty("io_bytes").GetInt64());
        Assert.Equal(16L << 20, job.GetProperty("read").GetProperty("io_bytes").GetInt64()); // the verify pass read everything back
    }

    private async Task<JsonElement> NbdinfoAsync(string uri)
    {
        var result = await ExternalTool.RunCheckedAsync(output, "nbdinfo", ["--json", uri], ToolTimeout);
        using var json = JsonDocument.Parse(result.StandardOutput);
        return json.RootElement.GetProperty("exports")[0].Clone();
    }

    private static async Task<string> Sha256FileAsync(string path)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexString(await System.Security.Cryptography.SHA256.HashDataAsync(stream));
    }
}
