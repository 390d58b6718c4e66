using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Tests.Raf;

/// <summary>Writes log lines to the xunit output of the running test.</summary>
public sealed class TestOutputLogger(ITestOutputHelper output, string category) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {category}: {formatter(state, exception)}{(exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})")}");
        }
        catch (InvalidOperationException)
        {
            // Output after the test ended (background work) has nowhere to go.
        }
    }
}

/// <summary>A memory file system and catalog with one volume, and a way to open engines on it.</summary>
public sealed class RafHarness
{
    public const string Volume = "vol1";

    public RafHarness(ITestOutputHelper output, long size = 1 << 20, RafOptions? options = null)
    {
        Catalog = new MemoryVolumeCatalog();
        Catalog.Create(Volume, size, replicas: 3);
        Fs = new MemoryPanguFileSystem(Catalog.EpochOf);
        Logger = new TestOutputLogger(output, "raf");
        Options = options ?? SmallOptions();
    }

    public MemoryVolumeCatalog Catalog { get; }
    public MemoryPanguFileSystem Fs { get; }
    public ILogger Logger { get; }
    public RafOptions Options { get; }
    public string Directory => $"/volumes/{Volume}";

    /// <summary>Small segments and checkpoint intervals so tests roll, checkpoint and collect often; no background GC.</summary>
    public static RafOptions SmallOptions() => new()
    {
        SegmentSizeBytes = 64 << 10,
        MaxRecordDataBytes = 16 << 10,
        MaxBatchBytes = 64 << 10,
        CheckpointIntervalBytes = 256 << 10,
        GcBandwidthBytesPerSecond = 0,
        GcInterval = null,
        Holder = "test",
    };

    public Task<RafVolume> OpenAsync(RafOptions? options = null) =>
        RafVolume.OpenAsync(Fs, Catalog, Volume, options ?? Options, Logger, CancellationToken.None);

    public async Task<long> SpaceUsedAsync() =>
        (await Fs.ListAsync(Directory, recursive: true)).Sum(e => e.Length);

    public async Task<List<string>> SegmentsAsync() =>
        (await Fs.ListAsync($"{Directory}/log")).Select(e => e.Path).ToList();

    public async Task<List<string>> CheckpointsAsync() =>
        (await Fs.ListAsync($"{Directory}/checkpoint")).Select(e => e.Path).ToList();

    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static async Task<byte[]> ReadAllAsync(RafVolume volume)
    {
        var bytes = new byte[volume.Size];
        await volume.ReadAsync(0, bytes);
        return bytes;
    }

    /// <summary>Asserts equality and names the first differing offset instead of dumping megabytes.</summary>
    public static void AssertSameBytes(byte[] expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var mismatch = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(mismatch == expected.Length, $"{what}: first difference at offset {mismatch} (expected {(mismatch < expected.Length ? expected[mismatch] : 0)}, got {(mismatch < actual.Length ? actual[mismatch] : 0)})");
    }
}
