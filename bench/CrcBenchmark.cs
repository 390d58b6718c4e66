using System.Diagnostics;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Bench;

/// <summary>
/// CRC32C microbenchmark, single thread, in-cache buffers: the single-chain serial loop
/// (<c>Crc32C.UpdateSerial</c>, the implementation before issue 12) against <see cref="Crc32C.Update"/>,
/// alternated in rounds in the same process; prints the median GB/s of the rounds per size.
/// </summary>
public static class CrcBenchmark
{
    public static int Run(string[] args)
    {
        var rounds = AppendBenchmark.IntOption(args, "--rounds", 7);
        var roundMs = AppendBenchmark.IntOption(args, "--round-ms", 200);
        var sizes = new[] { 4096, 65536, 1 << 20 };
        var data = new byte[sizes.Max()];
        new Random(12).NextBytes(data);

        // Warm-up so both paths are at tier 1 before anything is timed.
        foreach (var size in sizes)
        {
            Measure(data.AsSpan(0, size).ToArray(), serial: true, 100);
            Measure(data.AsSpan(0, size).ToArray(), serial: false, 100);
        }
        Console.WriteLine($"CRC32C, {rounds} alternated rounds of {roundMs} ms per size and implementation, median GB/s (1 GB = 1e9 bytes)");
        foreach (var size in sizes)
        {
            var buffer = data.AsSpan(0, size).ToArray();
            if (Crc32C.UpdateSerial(Crc32C.Begin(), buffer) != Crc32C.Update(Crc32C.Begin(), buffer))
            {
                Console.Error.WriteLine($"mismatch at {size} bytes");
                return 1;
            }
            var old = new List<double>();
            var striped = new List<double>();
            for (var r = 0; r < rounds; r++)
            {
                old.Add(Measure(buffer, serial: true, roundMs));
                striped.Add(Measure(buffer, serial: false, roundMs));
            }
            var oldGbs = Median(old);
            var newGbs = Median(striped);
            Console.WriteLine($"{size,8} B   serial (old) {oldGbs,6:F2} GB/s   striped (new) {newGbs,6:F2} GB/s   speed-up {newGbs / oldGbs:F2}x");
        }
        return 0;
    }

    private static double Measure(byte[] buffer, bool serial, int ms)
    {
        var state = Crc32C.Begin();
        long bytes = 0;
        var watch = Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < ms)
        {
            for (var i = 0; i < 64; i++)
            {
                state = serial ? Crc32C.UpdateSerial(state, buffer) : Crc32C.Update(state, buffer);
            }
            bytes += 64L * buffer.Length;
        }
        var seconds = watch.Elapsed.TotalSeconds;
        GC.KeepAlive(state);
        return bytes / seconds / 1e9;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
