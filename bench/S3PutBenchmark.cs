using System.Diagnostics;
using System.Globalization;
using FeitianK8s.Core.Backup;

namespace FeitianK8s.Bench;

/// <summary>
/// The peer of a backup: the same bytes uploaded as plain objects of the same size, in parallel,
/// with the same S3 client settings, and nothing else (no cluster reads, no hashing, no listing).
/// Prints one line: "plain-upload BYTES SECONDS".
/// </summary>
public static class S3PutBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        string? Arg(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
        var file = Arg("--file") ?? throw new ArgumentException("--file is required");
        var target = BackupTarget.Parse(Arg("--target") ?? throw new ArgumentException("--target is required"));
        var endpoint = Arg("--endpoint") ?? throw new ArgumentException("--endpoint is required");
        var objectSize = int.Parse(Arg("--object-size") ?? "1048576", CultureInfo.InvariantCulture);
        var parallel = int.Parse(Arg("--parallel") ?? "8", CultureInfo.InvariantCulture);
        using var store = BackupStore.Open(target, new BackupStoreOptions(endpoint) { Parallelism = parallel });
        var length = new FileInfo(file).Length;
        var count = (length + objectSize - 1) / objectSize;
        using var handle = File.OpenHandle(file);
        var started = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(Enumerable.Range(0, (int)count), new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (i, ct) =>
        {
            var buffer = new byte[(int)Math.Min(objectSize, length - ((long)i * objectSize))];
            await RandomAccess.ReadAsync(handle, buffer, (long)i * objectSize, ct);
            await store.PutAsync($"{target.Prefix}plain/{i:D8}", buffer, ct);
        });
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plain-upload {length} {seconds:0.000}"));
        return 0;
    }
}
