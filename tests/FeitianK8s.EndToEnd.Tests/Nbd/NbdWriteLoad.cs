using System.Collections.Concurrent;
using System.Diagnostics;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// A steady 4 KiB random-write load over NBD with a fixed queue depth and a FLUSH every
/// <see cref="FlushEvery"/> writes, recording every reply: which write each block last got
/// acknowledged, every failed request (with when it failed), the longest wait of one request and
/// the longest time without any acknowledgement (the write pause). Write k goes to block
/// k·40503 mod blocks (a permutation per round), so two writes to one block are never in flight together.
/// </summary>
public sealed class NbdWriteLoad : IAsyncDisposable
{
    public const int BlockSize = 4096;
    public const int FlushEvery = 200;

    private readonly NbdWireClient _client;
    private readonly int _blocks;
    private readonly int _window;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<int, int> _lastAcknowledged = new();
    private readonly ConcurrentDictionary<int, bool> _failedWrites = new();
    private readonly ConcurrentQueue<LoadError> _errors = new();
    private readonly object _gate = new();
    private Task _run = Task.CompletedTask;
    private long _acknowledged;
    private int _issued;
    private TimeSpan _lastAckAt;
    private TimeSpan _longestRequest;
    private TimeSpan _longestPause;

    private NbdWriteLoad(NbdWireClient client, int blocks, int window)
    {
        _client = client;
        _blocks = blocks;
        _window = window;
    }

    public sealed record LoadError(TimeSpan At, string Request, uint NbdError);

    /// <summary>Opens the export and starts writing; <paramref name="blocks"/> must be a power of two.</summary>
    public static async Task<NbdWriteLoad> StartAsync(int port, string export, int blocks, int window = 16)
    {
        Assert.True(blocks > window && (blocks & (blocks - 1)) == 0, "blocks must be a power of two above the window");
        var load = new NbdWriteLoad(await NbdWireClient.OpenAsync(port, export), blocks, window);
        load._run = Task.Run(load.RunAsync);
        return load;
    }

    public TimeSpan Elapsed => _clock.Elapsed;
    public long Acknowledged => Interlocked.Read(ref _acknowledged);
    public IReadOnlyCollection<LoadError> Errors => _errors.ToArray();

    /// <summary>The longest time between two acknowledgements while the load ran.</summary>
    public TimeSpan LongestPause
    {
        get
        {
            lock (_gate)
            {
                return _longestPause;
            }
        }
    }

    /// <summary>The longest a single request waited for its reply.</summary>
    public TimeSpan LongestRequest
    {
        get
        {
            lock (_gate)
            {
                return _longestRequest;
            }
        }
    }

    /// <summary>Waits until <paramref name="more"/> further writes were acknowledged (fails the test after <paramref name="timeout"/>).</summary>
    public async Task WaitForMoreAsync(long more, TimeSpan timeout)
    {
        var target = Acknowledged + more;
        var deadline = Stopwatch.StartNew();
        while (Acknowledged < target)
        {
            Assert.True(deadline.Elapsed < timeout, $"only {Acknowledged} of {target} writes acknowledged after {timeout}; errors: {string.Join("; ", Errors.Take(5))}");
            Assert.False(_run.IsFaulted, $"the load stopped: {_run.Exception}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until a request failed (fails the test after <paramref name="timeout"/>).</summary>
    public async Task<LoadError> WaitForErrorAsync(TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (_errors.IsEmpty)
        {
            Assert.True(deadline.Elapsed < timeout, $"no request failed within {timeout}");
            await Task.Delay(20);
        }
        return _errors.First();
    }

    /// <summary>Stops issuing and waits for every request in flight.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _run;
    }

    /// <summary>
    /// Reads every block: it must hold its last acknowledged write, or (only where a later write
    /// failed) that later write whole; a block never written must read zeros.
    /// </summary>
    public async Task VerifyAsync(NbdWireClient reader, ITestOutputHelper output)
    {
        var lastIssuedFailed = _failedWrites.Keys.GroupBy(k => Block(k)).ToDictionary(g => g.Key, g => g.ToHashSet());
        var checkedBlocks = 0;
        for (var block = 0; block < _blocks; block += 64)
        {
            var data = await reader.ReadCheckedAsync(block * (long)BlockSize, 64 * BlockSize);
            for (var i = 0; i < 64; i++)
            {
                var b = block + i;
                var actual = data.AsMemory(i * BlockSize, BlockSize);
                var acknowledged = _lastAcknowledged.TryGetValue(b, out var k) ? k : -1;
                if (acknowledged >= 0 ? actual.Span.SequenceEqual(Pattern(acknowledged)) : actual.Span.IndexOfAnyExcept((byte)0) < 0)
                {
                    checkedBlocks++;
                    continue;
                }
                var laterFailed = lastIssuedFailed.GetValueOrDefault(b) ?? [];
                Assert.True(laterFailed.Any(f => f > acknowledged && actual.Span.SequenceEqual(Pattern(f))),
                    $"block {b} holds neither its last acknowledged write {acknowledged} nor a later failed one ({string.Join(',', laterFailed)}); first bytes {Convert.ToHexString(actual.Span[..16])}");
                checkedBlocks++;
            }
        }
        output.WriteLine($"verified {checkedBlocks} blocks: {_lastAcknowledged.Count} hold their last acknowledged write");
    }

    private int Block(int write) => (int)((write * 40503L) % _blocks);

    /// <summary>4 KiB unique to write <paramref name="write"/>: its number every 512 bytes, PRNG bytes between.</summary>
    public static byte[] Pattern(int write)
    {
        var data = new byte[BlockSize];
        new Random(write * 7919 + 17).NextBytes(data);
        for (var i = 0; i < BlockSize; i += 512)
        {
            BitConverter.TryWriteBytes(data.AsSpan(i), write);
        }
        return data;
    }

    private async Task RunAsync()
    {
        using var window = new SemaphoreSlim(_window);
        var inFlight = new List<Task>();
        for (var k = 0; !_stop.IsCancellationRequested; k++)
        {
            try
            {
                await window.WaitAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            _issued = k + 1;
            var write = k;
            inFlight.Add(Task.Run(() => RequestAsync($"write {write}", () => _client.WriteAsync(Block(write) * (long)BlockSize, Pattern(write)), window,
                ok =>
                {
                    if (ok)
                    {
                        _lastAcknowledged[Block(write)] = write;
                    }
                    else
                    {
                        _failedWrites[write] = true;
                    }
                })));
            if (k % FlushEvery == FlushEvery - 1)
            {
                await window.WaitAsync();
                inFlight.Add(Task.Run(() => RequestAsync($"flush after write {write}", () => _client.FlushAsync(), window, _ => { })));
            }
            inFlight.RemoveAll(t => t.IsCompleted);
        }
        await Task.WhenAll(inFlight);
    }

    private async Task RequestAsync(string what, Func<Task<NbdReply>> send, SemaphoreSlim window, Action<bool> done)
    {
        var started = _clock.Elapsed;
        try
        {
            var reply = await send();
            var now = _clock.Elapsed;
            done(reply.Error == 0);
            lock (_gate)
            {
                _longestRequest = Max(_longestRequest, now - started);
                if (reply.Error == 0)
                {
                    // Measured from the first acknowledgement on, so start-up is not a pause.
                    _longestPause = _lastAckAt == TimeSpan.Zero ? _longestPause : Max(_longestPause, now - _lastAckAt);
                    _lastAckAt = now;
                }
            }
            if (reply.Error == 0)
            {
                Interlocked.Increment(ref _acknowledged);
            }
            else
            {
                _errors.Enqueue(new LoadError(now, what, reply.Error));
            }
        }
        catch (IOException e)
        {
            done(false);
            _errors.Enqueue(new LoadError(_clock.Elapsed, $"{what} (connection lost: {e.Message})", uint.MaxValue));
            await _stop.CancelAsync();
        }
        finally
        {
            window.Release();
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _client.DisposeAsync();
        _stop.Dispose();
    }
}
