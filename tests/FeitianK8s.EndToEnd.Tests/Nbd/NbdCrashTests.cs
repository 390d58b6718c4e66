using System.Collections.Concurrent;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// kill -9 of the process serving NBD in the middle of a pipelined write workload. Every write
/// is a full block of a pattern unique to that write, so after the restart each block must hold
/// exactly the last write acknowledged for it, or the single newer write that was in flight:
/// never older data, never a mix.
/// </summary>
public sealed class NbdCrashTests(ITestOutputHelper output)
{
    private const int BlockSize = 64 * 1024;
    private const int Blocks = 256;          // 16 MiB volume
    private const int Window = 16;           // far below Blocks: a block has at most one write in flight
    private const int FlushEvery = 50;

    [Fact]
    public async Task Kill_9_during_writes_keeps_every_acknowledged_write_and_applies_none_by_half()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("crash", $"{Blocks * BlockSize / 1024}KiB");

        var acknowledged = new ConcurrentDictionary<int, bool>();
        var flushed = new HashSet<int>();
        var errors = new ConcurrentQueue<string>();
        var issued = 0;
        var killAfter = 40 + Random.Shared.Next(260);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var killNow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var connectionLost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var killer = Task.Run(async () =>
        {
            await killNow.Task;
            // The writer keeps the window full, so writes are in flight when the signal lands.
            await cluster.Up.KillAsync();
        });
        await using (var client = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "crash"))
        {
            using var window = new SemaphoreSlim(Window);
            var inFlight = new List<Task>();
            for (var k = 0; !connectionLost.Task.IsCompleted && errors.IsEmpty; k++)
            {
                await window.WaitAsync();
                issued = k + 1;
                var write = k;
                inFlight.Add(Task.Run(async () =>
                {
                    try
                    {
                        var reply = await client.WriteAsync(BlockOffset(write), Pattern(write));
                        if (reply.Error == 0)
                        {
                            acknowledged[write] = true;
                            if (acknowledged.Count >= killAfter)
                            {
                                killNow.TrySetResult();
                            }
                        }
                        else
                        {
                            errors.Enqueue($"write {write} failed with NBD error {reply.Error}");
                        }
                    }
                    catch (IOException)
                    {
                        // The server died before answering: this write is not acknowledged.
                        connectionLost.TrySetResult();
                    }
                    finally
                    {
                        window.Release();
                    }
                }));
                if (k % FlushEvery == FlushEvery - 1)
                {
                    // Everything acknowledged before the flush is sent is covered by its reply. The flush
                    // runs beside the writes so the window stays full until the kill.
                    var covered = acknowledged.Keys.ToList();
                    inFlight.Add(Task.Run(async () =>
                    {
                        try
                        {
                            var reply = await client.FlushAsync();
                            if (reply.Error != 0)
                            {
                                errors.Enqueue($"flush after write {write} failed with NBD error {reply.Error}");
                            }
                            lock (flushed)
                            {
                                flushed.UnionWith(reply.Error == 0 ? covered : []);
                            }
                        }
                        catch (IOException)
                        {
                            connectionLost.TrySetResult();
                        }
                    }));
                }
            }
            await Task.WhenAll(inFlight);
        }
        killNow.TrySetResult(); // also when the workload stopped on an error: the cluster goes down either way
        await killer;
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1}s: workload over");
        output.WriteLine($"issued {issued} writes, {acknowledged.Count} acknowledged before the kill, {issued - acknowledged.Count} not acknowledged, {flushed.Count} of them covered by a completed flush (kill after {killAfter} acknowledgements)");
        Assert.Empty(errors);
        Assert.True(acknowledged.Count >= killAfter, $"only {acknowledged.Count} writes acknowledged, the kill was due after {killAfter}");
        // The fault took effect: the workload ended because the connection died, the process
        // serving NBD is gone and its port refuses connections.
        Assert.True(connectionLost.Task.IsCompleted, "the workload ended without losing its connection: the kill never cut it");
        Assert.True(cluster.Up.HasExited, "feitian up is still running after kill -9");
        await ServerFaults.AssertPortRefusesAsync("NBD", cluster.Up.NbdPort);

        await cluster.CrashAndRestartAsync();
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1}s: restarted");
        await using var reader = await NbdWireClient.OpenAsync(cluster.Up.NbdPort, "crash");
        var newerThanAcknowledged = 0;
        for (var block = 0; block < Blocks; block++)
        {
            var writes = Enumerable.Range(0, issued).Where(k => k % Blocks == block).ToList();
            var lastAcked = writes.Where(acknowledged.ContainsKey).DefaultIfEmpty(-1).Max();
            var candidates = writes.Where(k => k >= lastAcked).ToList();
            var data = await reader.ReadCheckedAsync(block * (long)BlockSize, BlockSize);
            var match = candidates.FirstOrDefault(k => Pattern(k).AsSpan().SequenceEqual(data), -2);
            if (match == -2 && lastAcked < 0 && data.All(b => b == 0))
            {
                continue; // never acknowledged, never applied
            }
            Assert.True(match != -2,
                $"block {block} (offset {block * (long)BlockSize}) holds neither its last acknowledged write {lastAcked} nor a complete later one " +
                $"(candidates {string.Join(',', candidates)}; first bytes {Convert.ToHexString(data, 0, 16)})");
            if (match != lastAcked)
            {
                newerThanAcknowledged++;
            }
        }
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1}s: every block verified; {newerThanAcknowledged} blocks hold an in-flight write that landed whole");
    }

    private static long BlockOffset(int write) => (long)(write % Blocks) * BlockSize;

    /// <summary>A block-sized pattern unique to write <paramref name="write"/>: its number in every 8 bytes, mixed with a PRNG stream.</summary>
    private static byte[] Pattern(int write)
    {
        var data = new byte[BlockSize];
        new Random(write * 7919 + 17).NextBytes(data);
        for (var i = 0; i < BlockSize; i += 512)
        {
            BitConverter.TryWriteBytes(data.AsSpan(i), write);
        }
        return data;
    }
}
