using System.Text.Json;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>`feitian volume create/ls/resize/rm` as processes against `feitian up`; bad input is one line on stderr and changes nothing.</summary>
public sealed class VolumeCliTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Volume_commands_manage_volumes_and_refuse_bad_sizes_and_names()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        var up = cluster.Up;

        await up.RunCliCheckedAsync("volume", "create", "alpha", "--size", "1GiB");
        await up.RunCliCheckedAsync("volume", "create", "beta", "--size", "64MiB", "--replicas", "2");
        Assert.Equal([("alpha", 1L << 30, 3), ("beta", 64L << 20, 2)], await ListAsync(up));

        var before = await ListAsync(up);
        foreach (var size in new[] { "5KiB", "1000", "4097", "1GB", "12XiB", "-4KiB", "abc", "0" })
        {
            await ExpectRefusedAsync(up, $"size '{size}'", "volume", "create", "gamma", "--size", size);
            await ExpectRefusedAsync(up, $"resize to '{size}'", "volume", "resize", "alpha", "--size", size);
        }
        foreach (var name in new[] { "a/b", "..", "has space", "UPPER", new string('n', 300), "dash-", "a_b" })
        {
            await ExpectRefusedAsync(up, $"name '{name}'", "volume", "create", name, "--size", "4MiB");
        }
        await ExpectRefusedAsync(up, "an existing name with another size", "volume", "create", "alpha", "--size", "2GiB");
        await ExpectRefusedAsync(up, "a missing --size", "volume", "create", "delta");
        await ExpectRefusedAsync(up, "resizing an unknown volume", "volume", "resize", "nosuch", "--size", "1GiB");
        await ExpectRefusedAsync(up, "shrinking", "volume", "resize", "alpha", "--size", "512MiB");
        Assert.Equal(before, await ListAsync(up));

        await up.RunCliCheckedAsync("volume", "resize", "alpha", "--size", "2GiB");
        await up.RunCliCheckedAsync("volume", "rm", "beta");
        Assert.Equal([("alpha", 2L << 30, 3)], await ListAsync(up));
        var nbdinfo = await FeitianK8s.Testing.ExternalTool.RunCheckedAsync(output, "nbdinfo", ["--size", up.NbdUri("alpha")], TimeSpan.FromMinutes(1));
        Assert.Equal((2L << 30).ToString(), nbdinfo.StandardOutput.Trim());
    }

    private async Task ExpectRefusedAsync(FeitianK8s.Testing.FeitianUpProcess up, string what, params string[] arguments)
    {
        var result = await up.RunCliAsync(arguments);
        Assert.True(result.ExitCode != 0, $"{what} was accepted");
        var stderr = result.StandardError.Trim();
        Assert.True(stderr.Length > 0 && !stderr.Contains('\n'), $"{what}: want one line on stderr, got: {stderr}");
        Assert.DoesNotContain("Exception", stderr);
    }

    private static async Task<List<(string Name, long Size, int Replicas)>> ListAsync(FeitianK8s.Testing.FeitianUpProcess up)
    {
        using var json = JsonDocument.Parse(await up.RunCliCheckedAsync("volume", "ls", "--json"));
        return json.RootElement.GetProperty("volumes").EnumerateArray()
            .Select(v => (v.GetProperty("name").GetString()!, v.GetProperty("sizeBytes").GetInt64(), v.GetProperty("replicas").GetInt32()))
            .ToList();
    }
}
