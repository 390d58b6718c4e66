using System.Diagnostics;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Bench;

/// <summary>
/// Pangu append benchmark on a fresh local cluster (3 replicas on 3 racks): 1 MiB
/// appends for throughput and 4 KiB appends for latency, each awaited before the
/// next. The peer, measured in the same run on the same filesystem, is a plain local
/// file written with the same sizes (write() only, no replication).
/// </summary>
public static class AppendBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var totalMiB = IntOption(args, "--total-mib", 512);
        var smallCount = IntOption(args, "--small-count", 5000);
        var chunkServers = IntOption(args, "--chunkservers", 6);
        var racks = IntOption(args, "--racks", 3);
        var dir = Path.Combine(Path.GetTempPath(), $"feitian-bench-{Guid.NewGuid():N}");
        // Keeps each server's tiered-JIT thread alive between bursts (default: it exits after idling), so its
        // CPU time stays visible in /proc and can be told apart from the data path's (see ClusterCpu).
        Environment.SetEnvironmentVariable("DOTNET_TC_BackgroundWorkerTimeoutMs", "86400000");
        using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
        try
        {
            await using var cluster = await LocalClusterLauncher.StartAsync(
                new LocalClusterOptions { DataDir = dir, ChunkServers = chunkServers, Racks = racks }, loggers);
            await cluster.WaitForChunkServersAliveAsync();
            using var fs = new PanguClient(new PanguClientOptions { MasterAddresses = [cluster.MasterAddress], ClientNode = "node-1", Tls = cluster.ClientTls() }, loggers);

            var big = RandomBytes(1 << 20);
            var small = RandomBytes(4096);
            await fs.CreateAsync("/bench/big");
            await using (var appender = await fs.OpenForAppendAsync("/bench/big"))
            {
                // Warm-up: channels, first chunk, and long enough for tiered JIT to finish with the hot paths.
                await TimeAsync(IntOption(args, "--warmup-mib", 64), () => appender.AppendAsync(big));
                var cpu = new ClusterCpu(cluster);
                var idleBefore = cpu.Snapshot();
                await Task.Delay(TimeSpan.FromSeconds(5));
                var idle = cpu.Snapshot() - idleBefore;
                Console.WriteLine($"  idle cluster (5 s, no I/O): {idle.Total / 5:F3} cores   of which servers' tiered JIT {idle.Jit / 5:F3}");
                Console.WriteLine("measuring 1 MiB appends");
                var cpuBefore = cpu.Snapshot();
                var throughput = await TimeAsync(totalMiB, () => appender.AppendAsync(big));
                var cpuUsed = cpu.Snapshot() - cpuBefore;
                await appender.CloseAsync();
                var peer = LocalFileThroughput(dir, big, totalMiB);
                Console.WriteLine($"1 MiB appends, 3 replicas: {totalMiB / throughput.TotalSeconds,8:F1} MiB/s   local file: {totalMiB / peer.TotalSeconds,8:F1} MiB/s   ratio {peer.TotalSeconds / throughput.TotalSeconds:F3}");
                Console.WriteLine($"  CPU (client + masters + chunk servers): {cpuUsed.Total / (totalMiB / 1024.0),6:F2} s/GiB   client {cpuUsed.Client / (totalMiB / 1024.0),6:F2}   servers {cpuUsed.Servers / (totalMiB / 1024.0),6:F2}   of which their tiered JIT {cpuUsed.Jit / (totalMiB / 1024.0),6:F2}");
            }

            await fs.CreateAsync("/bench/small");
            await using (var appender = await fs.OpenForAppendAsync("/bench/small"))
            {
                for (var i = 0; i < 1000; i++)
                {
                    await appender.AppendAsync(small);
                }
                var cpu = new ClusterCpu(cluster);
                var cpuBefore = cpu.Snapshot();
                var latencies = await LatenciesAsync(smallCount, () => appender.AppendAsync(small));
                var cpuUsed = cpu.Snapshot() - cpuBefore;
                Console.WriteLine($"  CPU per 1k 4 KiB appends: {cpuUsed.Total / (smallCount / 1000.0),6:F3} s   client {cpuUsed.Client / (smallCount / 1000.0),6:F3}   servers {cpuUsed.Servers / (smallCount / 1000.0),6:F3}   of which their tiered JIT {cpuUsed.Jit / (smallCount / 1000.0),6:F3}");
                var peer = LocalFileLatencies(dir, small, smallCount);
                Console.WriteLine($"4 KiB append latency, 3 replicas: p50 {Percentile(latencies, 50),8:F1} us  p99 {Percentile(latencies, 99),8:F1} us   local file: p50 {Percentile(peer, 50),6:F1} us  p99 {Percentile(peer, 99),6:F1} us");
                await appender.CloseAsync();
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// CPU seconds (utime + stime from /proc) of this process and of the cluster's server processes, and the
    /// part spent by the runtime's tiered-JIT threads (a start-up cost that fresh processes still pay minutes
    /// into a run on a loaded machine, and that a long-lived server pays once).
    /// </summary>
    private sealed class ClusterCpu(LocalClusterLauncher cluster)
    {
        public CpuSeconds Snapshot()
        {
            var servers = cluster.ChunkServers.Concat(cluster.Masters).Select(s => s.Process?.Pid).OfType<int>().ToArray();
            var client = ProcessSeconds(Environment.ProcessId).Total;
            var serverTimes = servers.Select(ProcessSeconds).ToArray();
            return new CpuSeconds(client, serverTimes.Sum(t => t.Total), serverTimes.Sum(t => t.Jit));
        }

        private static (double Total, double Jit) ProcessSeconds(int pid)
        {
            var jit = 0.0;
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    var (comm, seconds) = StatSeconds(File.ReadAllText(Path.Combine(task, "stat")));
                    if (comm.StartsWith(".NET Tiered Com", StringComparison.Ordinal))
                    {
                        jit += seconds;
                    }
                }
                catch (IOException)
                {
                    // The thread ended meanwhile.
                }
            }
            return (StatSeconds(File.ReadAllText($"/proc/{pid}/stat")).Seconds, jit);
        }

        private static (string Comm, double Seconds) StatSeconds(string stat)
        {
            var comm = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // fields[0] is field 3 (state): utime is field 14, stime field 15; clock ticks are 100 Hz on Linux.
            return (comm, (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0);
        }
    }

    private readonly record struct CpuSeconds(double Client, double Servers, double Jit)
    {
        public double Total => Client + Servers;
        public static CpuSeconds operator -(CpuSeconds a, CpuSeconds b) => new(a.Client - b.Client, a.Servers - b.Servers, a.Jit - b.Jit);
    }

    private static async Task<TimeSpan> TimeAsync(int count, Func<Task> operation)
    {
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            await operation();
        }
        return Stopwatch.GetElapsedTime(started);
    }

    private static async Task<double[]> LatenciesAsync(int count, Func<Task> operation)
    {
        var result = new double[count];
        for (var i = 0; i < count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await operation();
            result[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        }
        return result;
    }

    private static TimeSpan LocalFileThroughput(string dir, byte[] piece, int count)
    {
        var path = Path.Combine(dir, "peer-big");
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write);
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            RandomAccess.Write(handle, piece, (long)i * piece.Length);
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        File.Delete(path);
        return elapsed;
    }

    private static double[] LocalFileLatencies(string dir, byte[] piece, int count)
    {
        var path = Path.Combine(dir, "peer-small");
        using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write);
        var result = new double[count];
        for (var i = 0; i < count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            RandomAccess.Write(handle, piece, (long)i * piece.Length);
            result[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        }
        File.Delete(path);
        return result;
    }

    private static double Percentile(double[] values, int percentile)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(percentile / 100.0 * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    private static byte[] RandomBytes(int length)
    {
        var bytes = new byte[length];
        Random.Shared.NextBytes(bytes);
        return bytes;
    }

    internal static int IntOption(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length && int.TryParse(args[index + 1], out var value) ? value : fallback;
    }
}
