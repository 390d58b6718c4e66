using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.Core.Common;

namespace FeitianK8s.ChunkServer.Replication;

/// <summary>
/// Flow control of re-replication on this chunk server (so a lost disk does not start a
/// replication storm): at most <see cref="Concurrency"/> copies from peers run at once, further
/// ones wait for a slot until their call is cancelled or its deadline passes; all running copies
/// draw from one token bucket of <see cref="BandwidthBytesPerSecond"/>.
/// </summary>
public sealed class RebuildBudget
{
    // Never disposed: a copy still finishing after the server stopped may release its slot.
    private readonly SemaphoreSlim _slots;
    private readonly TokenBucket _bandwidth;
    private readonly RebuildMetrics _metrics;
    private int _active;
    private int _peakActive;

    public RebuildBudget(long bandwidthBytesPerSecond, int concurrency, RebuildMetrics metrics)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bandwidthBytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        BandwidthBytesPerSecond = bandwidthBytesPerSecond;
        Concurrency = concurrency;
        _slots = new SemaphoreSlim(concurrency, concurrency);
        // A tenth of a second of burst: short enough that a copy's duration follows the rate.
        _bandwidth = new TokenBucket(bandwidthBytesPerSecond, bandwidthBytesPerSecond / 10);
        _metrics = metrics;
        metrics.BandwidthLimit.Set(bandwidthBytesPerSecond);
        metrics.ConcurrencyLimit.Set(concurrency);
    }

    /// <summary>Bytes per second shared by all copies; 0 = unlimited.</summary>
    public long BandwidthBytesPerSecond { get; }

    public int Concurrency { get; }

    /// <summary>Copies running now.</summary>
    public int Active => Volatile.Read(ref _active);

    /// <summary>The most copies ever seen running at once; never above <see cref="Concurrency"/>.</summary>
    public int PeakActive => Volatile.Read(ref _peakActive);

    /// <summary>Waits for a free copy slot; dispose the result when the copy ends.</summary>
    public async Task<IDisposable> EnterAsync(CancellationToken ct)
    {
        if (!_slots.Wait(0, CancellationToken.None))
        {
            _metrics.SlotWaits.Inc();
            _metrics.Waiting.Inc();
            var started = Stopwatch.GetTimestamp();
            try
            {
                await _slots.WaitAsync(ct).ConfigureAwait(false);
            }
            finally
            {
                _metrics.Waiting.Dec();
                _metrics.SlotWaitSeconds.Inc(Stopwatch.GetElapsedTime(started).TotalSeconds);
            }
        }
        var active = Interlocked.Increment(ref _active);
        for (var peak = PeakActive; active > peak; peak = PeakActive)
        {
            Interlocked.CompareExchange(ref _peakActive, active, peak);
        }
        _metrics.Active.Inc();
        return new Slot(this);
    }

    /// <summary>The adaptive share of this budget the copies may use now (see <see cref="AdaptiveRebuildShare"/>).</summary>
    public AdaptiveRebuildShare Adaptive { get; init; } = new();

    /// <summary>
    /// Charges <paramref name="bytes"/> copied to the shared budget and waits until the rate allows them; then,
    /// when the adaptive share is below 1, pauses so the copy runs at share × its speed: the piece's time
    /// (<paramref name="pieceElapsed"/> plus the budget wait) × (1/share − 1).
    /// </summary>
    public async Task ChargeAsync(long bytes, TimeSpan pieceElapsed, CancellationToken ct)
    {
        var wait = _bandwidth.Take(bytes);
        var share = Adaptive.Share;
        if (share < 1)
        {
            wait += (pieceElapsed + (wait > TimeSpan.Zero ? wait : TimeSpan.Zero)) * (1 / share - 1);
        }
        if (wait <= TimeSpan.Zero)
        {
            return;
        }
        _metrics.ThrottledBytes.Inc(bytes);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await Task.Delay(wait, ct).ConfigureAwait(false);
        }
        finally
        {
            _metrics.ThrottleWaitSeconds.Inc(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    private void Leave()
    {
        Interlocked.Decrement(ref _active);
        _metrics.Active.Dec();
        _slots.Release();
    }

    private sealed class Slot(RebuildBudget budget) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                budget.Leave();
            }
        }
    }
}
