using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// Re-replication flow control (--rebuild-bandwidth, --rebuild-concurrency) over CopyChunkFromPeer
/// between two real chunk servers on loopback.
/// </summary>
public sealed class RebuildFlowControlTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int MiB = 1 << 20;
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private readonly HttpClient _http = new();
    private ChunkServerUnderTest _source = null!;
    private ChunkServerUnderTest? _target;

    public async Task InitializeAsync() =>
        _source = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("source")));

    public async Task DisposeAsync()
    {
        if (_target is not null)
        {
            await _target.DisposeAsync();
        }
        await _source.DisposeAsync();
        _http.Dispose();
        _loggers.Dispose();
        _dir.Dispose();
    }

    private async Task<ChunkServerUnderTest> StartTargetAsync(long bandwidth, int concurrency)
    {
        _target = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("target")) with
        {
            RebuildBandwidthBytesPerSecond = bandwidth,
            RebuildConcurrency = concurrency,
        });
        return _target;
    }

    private async Task<byte[]> SealedChunkOnSourceAsync(ulong id, int length)
    {
        var data = RandomBytes(length, (int)id);
        await _source.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = id, Epoch = 3 });
        for (var offset = 0; offset < length; offset += MiB)
        {
            await _source.AppendAsync(id, 3, (ulong)offset, data[offset..Math.Min(length, offset + MiB)]);
        }
        await _source.Client.SealAsync(new SealRequest { ChunkId = id, Epoch = 3, Length = (ulong)length });
        return data;
    }

    private Task<CopyChunkFromPeerResponse> CopyAsync(ChunkServerUnderTest target, ulong id, DateTime? deadline = null) =>
        target.Client.CopyChunkFromPeerAsync(new CopyChunkFromPeerRequest { ChunkId = id, SourceAddress = _source.Host.GrpcAddress, Epoch = 5 },
            deadline: deadline).ResponseAsync;

    /// <summary>The copy is sealed, byte-identical, and every block reads back through the target's checksum verification.</summary>
    private static async Task AssertIdenticalCopyAsync(ChunkServerUnderTest target, ulong id, byte[] data)
    {
        var info = await target.InfoAsync(id);
        Assert.Equal(((ulong)data.Length, true, 5ul), (info.Length, info.Sealed, info.Epoch));
        var copied = await target.ReadAllAsync(id);
        Assert.Equal(Crc32C.Compute(data), Crc32C.Compute(copied));
        Assert.Equal(data, copied);
    }

    private async Task<double> MetricAsync(ChunkServerUnderTest server, string name)
    {
        var text = await _http.GetStringAsync(server.Host.HttpAddress + "/metrics");
        var match = Regex.Match(text, $"^{Regex.Escape(name)} (\\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"{name} missing from /metrics");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_copy_under_a_bandwidth_limit_takes_at_least_its_size_over_the_rate_and_is_identical()
    {
        var target = await StartTargetAsync(bandwidth: 2 * MiB, concurrency: 2);
        var data = await SealedChunkOnSourceAsync(1, 4 * MiB);

        var watch = Stopwatch.StartNew();
        Assert.Equal((ulong)data.Length, (await CopyAsync(target, 1)).Length);
        watch.Stop();
        output.WriteLine($"4 MiB at 2 MiB/s took {watch.Elapsed.TotalSeconds:0.00} s");

        // 4 MiB at 2 MiB/s with a burst of a tenth of a second: at least (4 - 0.2) / 2 = 1.9 s.
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(1.5), $"the copy took only {watch.Elapsed}");
        await AssertIdenticalCopyAsync(target, 1, data);

        Assert.Equal(2 * MiB, await MetricAsync(target, "feitian_chunkserver_rebuild_bandwidth_limit_bytes_per_second"));
        Assert.Equal(2, await MetricAsync(target, "feitian_chunkserver_rebuild_concurrency_limit"));
        Assert.InRange(await MetricAsync(target, "feitian_chunkserver_rebuild_throttled_bytes_total"), 3 * MiB, 4 * MiB);
        Assert.True(await MetricAsync(target, "feitian_chunkserver_rebuild_throttle_wait_seconds_total") >= 1.0);
        Assert.Equal(0, await MetricAsync(target, "feitian_chunkserver_rebuild_copies_active"));
    }

    [Fact]
    public async Task Without_a_bandwidth_limit_nothing_is_throttled()
    {
        var target = await StartTargetAsync(bandwidth: 0, concurrency: 2);
        var data = await SealedChunkOnSourceAsync(1, 4 * MiB);
        await CopyAsync(target, 1);
        await AssertIdenticalCopyAsync(target, 1, data);
        Assert.Equal(0, await MetricAsync(target, "feitian_chunkserver_rebuild_bandwidth_limit_bytes_per_second"));
        Assert.Equal(0, await MetricAsync(target, "feitian_chunkserver_rebuild_throttled_bytes_total"));
    }

    /// <summary>Polls a metric of <paramref name="server"/> until it has <paramref name="expected"/>; fails after a generous deadline.</summary>
    private async Task WaitForMetricAsync(ChunkServerUnderTest server, string name, double expected, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        double value;
        while ((value = await MetricAsync(server, name)) != expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}: {name} is {value}, not {expected}");
            await Task.Delay(20);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Concurrent_copies_never_exceed_the_concurrency_limit_and_extra_ones_wait(int concurrency)
    {
        // Event-driven: the second copy is sent once the first one runs, and the first is long
        // (6 MiB at 2 MiB/s, about 3 s), so the second arrives while the first still holds its slot.
        var target = await StartTargetAsync(bandwidth: 2 * MiB, concurrency);
        var one = await SealedChunkOnSourceAsync(1, 6 * MiB);
        var two = await SealedChunkOnSourceAsync(2, 2 * MiB);

        var first = CopyAsync(target, 1);
        await Eventually.HoldsAsync(() => target.Host.Rebuild.Active == 1, "the first copy runs");
        var second = CopyAsync(target, 2);
        if (concurrency == 1)
        {
            await WaitForMetricAsync(target, "feitian_chunkserver_rebuild_copies_waiting", 1, "the second copy waiting for the only slot");
            Assert.Equal(1, target.Host.Rebuild.Active);
        }
        else
        {
            await Eventually.HoldsAsync(() => target.Host.Rebuild.Active == 2, "both copies running at once");
        }
        Assert.False(first.IsCompleted, "the first copy ended before the second one met it");
        await Task.WhenAll(first, second);

        // Concurrency 1: never two at once, the second waited for the slot. Concurrency 2: the counter does see overlap.
        Assert.Equal(concurrency, target.Host.Rebuild.PeakActive);
        Assert.Equal(concurrency == 1 ? 1 : 0, await MetricAsync(target, "feitian_chunkserver_rebuild_slot_waits_total"));
        Assert.Equal(0, await MetricAsync(target, "feitian_chunkserver_rebuild_copies_waiting"));
        Assert.Equal(0, target.Host.Rebuild.Active);
        await AssertIdenticalCopyAsync(target, 1, one);
        await AssertIdenticalCopyAsync(target, 2, two);
    }

    [Fact]
    public async Task A_copy_waiting_for_a_slot_gives_up_at_its_deadline_and_leaves_nothing()
    {
        // The first copy holds the only slot for about 6 s (6 MiB at 1 MiB/s); the late copy's
        // deadline of 2.5 s is generous enough to reach the server on a loaded machine and still
        // passes while the first copy runs.
        var target = await StartTargetAsync(bandwidth: 1 * MiB, concurrency: 1);
        var data = await SealedChunkOnSourceAsync(1, 6 * MiB);
        await SealedChunkOnSourceAsync(2, 1000);

        var running = CopyAsync(target, 1);
        await Eventually.HoldsAsync(() => target.Host.Rebuild.Active == 1, "the first copy runs");
        var late = CopyAsync(target, 2, deadline: DateTime.UtcNow.AddSeconds(2.5));
        // The late copy reached the slot wait (not a deadline spent before it got there).
        await WaitForMetricAsync(target, "feitian_chunkserver_rebuild_copies_waiting", 1, "the late copy waiting for the slot");
        var refused = await Assert.ThrowsAsync<RpcException>(() => late);
        Assert.Equal(StatusCode.DeadlineExceeded, refused.StatusCode);
        Assert.False(running.IsCompleted, "the first copy finished before the late copy's deadline: the deadline was not what ended it");
        Assert.Equal(1, await MetricAsync(target, "feitian_chunkserver_rebuild_slot_waits_total"));
        await WaitForMetricAsync(target, "feitian_chunkserver_rebuild_copies_waiting", 0, "the late copy leaving the wait");

        await running;
        await AssertIdenticalCopyAsync(target, 1, data);
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => target.InfoAsync(2));
        await Eventually.HoldsAsync(() => target.Host.Rebuild.Active == 0, "no copy left running");
        Assert.Equal(1, target.Host.Rebuild.PeakActive);
        Assert.Equal(0, await MetricAsync(target, "feitian_chunkserver_rebuild_copies_waiting"));

        // The slot is free again: the refused chunk copies now.
        await CopyAsync(target, 2);
        Assert.True((await target.InfoAsync(2)).Sealed);
    }

    private static ChunkServerOptions ParseWith(params string[] extra) =>
        CommandLine.Parse(["--data", "/tmp/d", "--master", "http://127.0.0.1:1", "--node", "n", "--rack", "r", .. extra]);

    [Fact]
    public void Rebuild_flags_take_bytes_or_kubernetes_quantities_and_default_to_unlimited_and_two()
    {
        var defaults = ParseWith();
        Assert.Equal((0L, 2), (defaults.RebuildBandwidthBytesPerSecond, defaults.RebuildConcurrency));
        Assert.Equal(100L * MiB, ParseWith("--rebuild-bandwidth", "100Mi").RebuildBandwidthBytesPerSecond);
        Assert.Equal(100_000_000L, ParseWith("--rebuild-bandwidth", "100M").RebuildBandwidthBytesPerSecond);
        Assert.Equal(1L << 30, ParseWith("--rebuild-bandwidth=1Gi").RebuildBandwidthBytesPerSecond);
        Assert.Equal(64L * MiB, ParseWith("--rebuild-bandwidth", "64MiB").RebuildBandwidthBytesPerSecond);
        Assert.Equal(500_000L, ParseWith("--rebuild-bandwidth", "500k").RebuildBandwidthBytesPerSecond);
        Assert.Equal(12345L, ParseWith("--rebuild-bandwidth", "12345").RebuildBandwidthBytesPerSecond);
        Assert.Equal(0L, ParseWith("--rebuild-bandwidth", "0").RebuildBandwidthBytesPerSecond);
        Assert.Equal(1, ParseWith("--rebuild-concurrency", "1").RebuildConcurrency);
        Assert.Equal(64, ParseWith("--rebuild-concurrency=64").RebuildConcurrency);
    }

    [Theory]
    [InlineData("--rebuild-bandwidth", "-1", "--rebuild-bandwidth '-1' is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "fast", "--rebuild-bandwidth 'fast' is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "1.5", "is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "100K", "is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "100 Mi", "is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "", "is not bytes per second")]
    [InlineData("--rebuild-bandwidth", "99999999Pi", "is not bytes per second")]
    [InlineData("--rebuild-concurrency", "0", "--rebuild-concurrency '0' must be a whole number from 1 to 1024")]
    [InlineData("--rebuild-concurrency", "-1", "must be a whole number")]
    [InlineData("--rebuild-concurrency", "two", "must be a whole number")]
    [InlineData("--rebuild-concurrency", "1025", "must be a whole number")]
    public void Bad_rebuild_flag_values_are_refused_with_the_reason(string flag, string value, string message)
    {
        var error = Assert.Throws<FormatException>(() => ParseWith(flag, value));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public async Task A_host_refuses_rebuild_options_out_of_range()
    {
        var options = ChunkServerUnderTest.OptionsFor(_dir.Sub("bad"));
        await Assert.ThrowsAsync<ArgumentException>(() => ChunkServerHost.StartAsync(options with { RebuildConcurrency = 0 }, _loggers));
        await Assert.ThrowsAsync<ArgumentException>(() => ChunkServerHost.StartAsync(options with { RebuildBandwidthBytesPerSecond = -1 }, _loggers));
    }

    [Fact]
    public void Kubernetes_quantities_follow_kubernetes_units()
    {
        Assert.Equal(100L << 20, ByteSize.ParseQuantity("100Mi"));
        Assert.Equal(100_000_000L, ByteSize.ParseQuantity("100M"));
        Assert.Equal(2L << 40, ByteSize.ParseQuantity("2Ti"));
        Assert.Equal(3_000_000_000L, ByteSize.ParseQuantity("3G"));
        Assert.Equal(1536L << 20, ByteSize.ParseQuantity("1.5Gi"));
        Assert.Equal(4096L, ByteSize.ParseQuantity("4KiB"));
        Assert.Throws<FormatException>(() => ByteSize.ParseQuantity("100m"));
        Assert.Throws<FormatException>(() => ByteSize.ParseQuantity("Mi"));
        Assert.Throws<FormatException>(() => ByteSize.ParseQuantity("1.5"));
        // The project's own sizes keep their binary meaning of a bare M.
        Assert.Equal(100L << 20, ByteSize.Parse("100M"));
    }
}
