using System.Text.Json;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// `feitian snapshot` and `feitian volume create --from-snapshot/--from-volume` against a running
/// `feitian up`, whose NBD server holds the volume's lease while a real NBD client writes to it.
/// </summary>
public sealed class SnapshotCliTests(ITestOutputHelper output)
{
    private const int MiB = 1 << 20;

    private static bool Same(byte[] expected, byte[] actual) => expected.AsSpan().SequenceEqual(actual);

    [Fact]
    public async Task Snapshot_write_more_clone_compares_bytes_with_the_snapshot_time_and_ls_rm_follow_the_contract()
    {
        await using var cluster = await NbdCluster.StartAsync(output, "--segment-size", "4MiB", "--gc-interval", "1");
        await cluster.CreateVolumeAsync("data", "16MiB");
        var atSnapshot = TestData.Random(8 * MiB, seed: 21);
        var later = TestData.Random(4 * MiB, seed: 22);

        await using (var client = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "data"))
        {
            await client.WriteCheckedAsync(0, atSnapshot);
            Assert.Equal(0u, (await client.FlushAsync()).Error);
            // The NBD server's engine holds the lease and answers the request; the client keeps writing after.
            var created = await cluster.Up.RunCliCheckedAsync("snapshot", "create", "data", "--name", "snap-1");
            Assert.Contains("snap-1", created, StringComparison.Ordinal);
            await client.WriteCheckedAsync(0, later);
            Assert.Equal(0u, (await client.FlushAsync()).Error);
        }

        // Names are unique cluster-wide.
        var again = await cluster.Up.RunCliAsync("snapshot", "create", "data", "--name", "snap-1");
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already exists", again.StandardError, StringComparison.Ordinal);
        var noName = await cluster.Up.RunCliAsync("snapshot", "create", "data");
        Assert.NotEqual(0, noName.ExitCode);

        using (var json = JsonDocument.Parse(await cluster.Up.RunCliCheckedAsync("snapshot", "ls", "--volume", "data", "--json")))
        {
            var snapshot = Assert.Single(json.RootElement.GetProperty("snapshots").EnumerateArray());
            Assert.Equal("snap-1", snapshot.GetProperty("name").GetString());
            Assert.Equal("data", snapshot.GetProperty("volume").GetString());
            Assert.Equal(16L * MiB, snapshot.GetProperty("sizeBytes").GetInt64());
            Assert.True(snapshot.GetProperty("readyToUse").GetBoolean());
            Assert.True(snapshot.TryGetProperty("createdAt", out _));
        }
        using (var json = JsonDocument.Parse(await cluster.Up.RunCliCheckedAsync("snapshot", "ls", "--volume", "other", "--json")))
        {
            Assert.Empty(json.RootElement.GetProperty("snapshots").EnumerateArray());
        }

        await cluster.Up.RunCliCheckedAsync("volume", "create", "restored", "--from-snapshot", "snap-1");
        await cluster.Up.RunCliCheckedAsync("volume", "create", "copy", "--from-volume", "data", "--size", "32MiB");
        var missing = await cluster.Up.RunCliAsync("volume", "create", "nothing", "--from-snapshot", "no-such-snap");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("does not exist", missing.StandardError, StringComparison.Ordinal);
        var smaller = await cluster.Up.RunCliAsync("volume", "create", "small", "--from-volume", "data", "--size", "4MiB");
        Assert.Equal(1, smaller.ExitCode);

        var expectedNow = atSnapshot.ToArray();
        later.CopyTo(expectedNow, 0);
        await using (var restored = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "restored"))
        {
            Assert.Equal(16UL * MiB, restored.ExportSize);
            Assert.True(Same(atSnapshot, await restored.ReadCheckedAsync(0, 8 * MiB)), "the clone differs from the volume at snapshot time");
        }
        await using (var copy = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "copy"))
        {
            Assert.Equal(32UL * MiB, copy.ExportSize);
            Assert.True(Same(expectedNow, await copy.ReadCheckedAsync(0, 8 * MiB)), "the clone of the volume differs from its content");
            var tail = TestData.Random(MiB, seed: 23);
            await copy.WriteCheckedAsync(31 * MiB, tail);
            Assert.True(Same(tail, await copy.ReadCheckedAsync(31 * MiB, MiB)));
        }

        // The source refuses deletion while clones share it; `up` is killed (-9) and restarted, and everything reads the same.
        var refused = await cluster.Up.RunCliAsync("volume", "rm", "data");
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("clone", refused.StandardError, StringComparison.Ordinal);
        var killed = cluster.Up.Pid;
        await cluster.CrashAndRestartAsync();
        Assert.NotEqual(killed, cluster.Up.Pid);
        Assert.Throws<ArgumentException>(() => System.Diagnostics.Process.GetProcessById(killed));
        await using (var restored = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "restored"))
        {
            Assert.True(Same(atSnapshot, await restored.ReadCheckedAsync(0, 8 * MiB)), "the clone differs after a restart");
        }
        await using (var data = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "data"))
        {
            Assert.True(Same(expectedNow, await data.ReadCheckedAsync(0, 8 * MiB)), "the source differs after a restart");
        }

        await cluster.Up.RunCliCheckedAsync("snapshot", "rm", "snap-1");
        var gone = await cluster.Up.RunCliAsync("snapshot", "rm", "snap-1");
        Assert.Equal(1, gone.ExitCode);
        using (var json = JsonDocument.Parse(await cluster.Up.RunCliCheckedAsync("snapshot", "ls", "--json")))
        {
            Assert.Empty(json.RootElement.GetProperty("snapshots").EnumerateArray());
        }
        await cluster.Up.RunCliCheckedAsync("volume", "rm", "restored");
        await cluster.Up.RunCliCheckedAsync("volume", "rm", "copy");
        await cluster.Up.RunCliCheckedAsync("volume", "rm", "data");
    }
}
