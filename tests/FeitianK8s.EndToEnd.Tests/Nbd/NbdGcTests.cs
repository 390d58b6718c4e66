using System.Text.Json;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>Log garbage collection seen from outside: space in Pangu and the bytes an NBD client reads.</summary>
public sealed class NbdGcTests(ITestOutputHelper output)
{
    private const int VolumeBytes = 16 << 20;
    private const int WriteBytes = 1 << 20;

    [Fact]
    public async Task After_five_overwrites_gc_keeps_pangu_space_under_twice_the_volume_and_every_byte_right()
    {
        // Small segments so the overwritten log spans many sealed segments; GC every second.
        await using var cluster = await NbdCluster.StartAsync(output, "--segment-size", "4MiB", "--gc-interval", "1");
        await cluster.CreateVolumeAsync("gc", "16MiB");

        var expected = new byte[VolumeBytes];
        await using (var client = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "gc"))
        {
            for (var pass = 0; pass < 5; pass++)
            {
                var data = TestData.Random(VolumeBytes, seed: 500 + pass);
                var order = Enumerable.Range(0, VolumeBytes / WriteBytes).OrderBy(_ => Random.Shared.Next()).ToList();
                await Task.WhenAll(order.Select(i => client.WriteCheckedAsync((long)i * WriteBytes, data.AsMemory(i * WriteBytes, WriteBytes))));
                Assert.Equal(0u, (await client.FlushAsync()).Error);
                data.CopyTo(expected, 0);
            }
        }
        output.WriteLine($"wrote {5 * VolumeBytes >> 20} MiB into a {VolumeBytes >> 20} MiB volume; Pangu holds {await PanguBytesAsync(cluster) >> 20} MiB");

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        long used;
        while ((used = await PanguBytesAsync(cluster)) >= 2L * VolumeBytes)
        {
            Assert.True(DateTime.UtcNow < deadline, $"GC left {used} bytes in /volumes/gc after 120 s; want under {2L * VolumeBytes}");
            await Task.Delay(1000);
        }
        output.WriteLine($"after GC: {used} bytes in /volumes/gc (volume {VolumeBytes})");

        await VerifyAsync(cluster, expected, "after GC");

        // Recovery after GC deleted segments: the volume reopens from GC's checkpoint with the same bytes.
        await cluster.RestartAsync();
        await VerifyAsync(cluster, expected, "after GC and a restart");
    }

    private static async Task VerifyAsync(NbdCluster cluster, byte[] expected, string when)
    {
        await using var reader = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "gc");
        for (var offset = 0; offset < VolumeBytes; offset += WriteBytes)
        {
            var data = await reader.ReadCheckedAsync(offset, WriteBytes);
            Assert.True(expected.AsSpan(offset, WriteBytes).SequenceEqual(data), $"bytes at {offset}..{offset + WriteBytes} differ {when}");
        }
    }

    /// <summary>Sum of the lengths of every file under the volume's directory, as `feitian fs ls -r --json` reports them.</summary>
    private static async Task<long> PanguBytesAsync(NbdCluster cluster)
    {
        var listing = await cluster.Up.RunCliCheckedAsync("fs", "ls", "-r", "--json", "/volumes/gc");
        using var json = JsonDocument.Parse(listing);
        return json.RootElement.GetProperty("entries").EnumerateArray()
            .Where(e => !e.GetProperty("directory").GetBoolean())
            .Sum(e => e.GetProperty("length").GetInt64());
    }
}
