using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Prometheus;

namespace FeitianK8s.Core.Tests.Raf;

public sealed class RafMetricsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task VolumeMetricsAreExportedWithTheVolumeLabel()
    {
        var name = $"metrics-{Guid.NewGuid():N}";
        var catalog = new MemoryVolumeCatalog();
        catalog.Create(name, 1 << 20);
        var fs = new MemoryPanguFileSystem(catalog.EpochOf);
        await using var volume = await RafVolume.OpenAsync(fs, catalog, name, RafHarness.SmallOptions(), new TestOutputLogger(output, "raf"), CancellationToken.None);
        await volume.WriteAsync(0, new byte[8192], fua: true);
        await volume.ReadAsync(0, new byte[4096]);

        using var stream = new MemoryStream();
        await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(stream);
        var text = System.Text.Encoding.UTF8.GetString(stream.ToArray());
        foreach (var metric in new[] { "feitian_raf_write_bytes_total", "feitian_raf_read_bytes_total", "feitian_raf_log_appends_total", "feitian_raf_flushes_total", "feitian_raf_live_bytes" })
        {
            var line = text.Split('\n').FirstOrDefault(l => l.StartsWith($"{metric}{{volume=\"{name}\"}}", StringComparison.Ordinal));
            Assert.NotNull(line);
            output.WriteLine(line);
            Assert.True(double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) > 0, line);
        }
    }
}
