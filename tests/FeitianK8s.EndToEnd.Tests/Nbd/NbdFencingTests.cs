using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>One writer per volume: a second engine opening the volume fences the one `feitian up` serves over NBD.</summary>
public sealed class NbdFencingTests(ITestOutputHelper output)
{
    private const int Mib = 1 << 20;

    [Fact]
    public async Task A_second_engine_fences_the_served_volume_and_its_nbd_writes_fail_without_corruption()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("fence", "16MiB");
        var before = TestData.Random(Mib, seed: 1);
        var rejected = TestData.Random(Mib, seed: 2);
        var byTakeover = TestData.Random(Mib, seed: 3);

        await using var nbd = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "fence");
        await nbd.WriteCheckedAsync(0, before);
        Assert.Equal(0u, (await nbd.FlushAsync()).Error);

        using var loggers = XunitLoggerProvider.CreateFactory(output);
        using (var fs = new PanguClient(new PanguClientOptions { MasterAddresses = ClusterFile.Read(cluster.DataDir).Masters, ClientNode = "node-test", Tls = cluster.AdminTls() }, loggers))
        {
            var options = new RafOptions { Holder = "fencing-test", GcInterval = null };
            await using var takeover = await RafVolume.OpenAsync(fs, new MasterVolumeCatalog(fs.Master), "fence", options, loggers.CreateLogger<RafVolume>(), CancellationToken.None);

            // The served engine's next write is refused with an NBD error, not silently lost or half applied.
            NbdReply reply;
            try
            {
                reply = await nbd.WriteAsync(Mib, rejected);
            }
            catch (IOException e)
            {
                output.WriteLine($"the server dropped the connection instead of answering: {e.Message}");
                reply = new NbdReply(uint.MaxValue, []);
            }
            output.WriteLine($"write through the fenced engine answered NBD error {reply.Error}");
            Assert.NotEqual(0u, reply.Error);

            var seen = new byte[3 * Mib];
            await takeover.ReadAsync(0, seen);
            Assert.True(before.AsSpan().SequenceEqual(seen.AsSpan(0, Mib)), "the new engine lost data acknowledged before the takeover");
            Assert.True(seen.AsSpan(Mib, Mib).IndexOfAnyExcept((byte)0) < 0, "the refused write reached the volume");

            await takeover.WriteAsync(2 * Mib, byTakeover, fua: true);
        }

        // A restarted cluster opens the volume afresh: it holds exactly what the two engines acknowledged.
        await cluster.RestartAsync();
        await using var after = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "fence");
        var first = await after.ReadCheckedAsync(0, Mib);
        var second = await after.ReadCheckedAsync(Mib, Mib);
        var third = await after.ReadCheckedAsync(2 * Mib, Mib);
        Assert.True(before.AsSpan().SequenceEqual(first), "data acknowledged before the takeover changed");
        Assert.True(second.AsSpan().IndexOfAnyExcept((byte)0) < 0, "the refused write appeared after the restart");
        Assert.True(byTakeover.AsSpan().SequenceEqual(third), "the new engine's write is missing after the restart");
    }
}
