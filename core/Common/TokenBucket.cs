using System.Diagnostics;

namespace FeitianK8s.Core.Common;

/// <summary>
/// A bytes-per-second budget: tokens accrue at <c>rate</c> up to <c>burst</c>; taking
/// more than are present waits until the debt is paid. A rate of 0 means unlimited.
/// </summary>
public sealed class TokenBucket
{
    private readonly object _gate = new();
    private readonly long _rate;
    private readonly long _burst;
    private readonly Func<TimeSpan> _clock;
    private double _tokens;
    private TimeSpan _last;

    public TokenBucket(long bytesPerSecond, long burstBytes, Func<TimeSpan>? clock = null)
    {
        _rate = bytesPerSecond;
        _burst = Math.Max(1, burstBytes);
        _clock = clock ?? MonotonicClock;
        _last = _clock();
        _tokens = _burst;
    }

    private static TimeSpan MonotonicClock() => TimeSpan.FromTicks(Stopwatch.GetTimestamp() * TimeSpan.TicksPerSecond / Stopwatch.Frequency);

    /// <summary>Takes <paramref name="bytes"/> tokens (going into debt if needed) and returns how long the caller must wait.</summary>
    public TimeSpan Take(long bytes)
    {
        if (_rate <= 0)
        {
            return TimeSpan.Zero;
        }
        lock (_gate)
        {
            var now = _clock();
            _tokens = Math.Min(_burst, _tokens + ((now - _last).TotalSeconds * _rate));
            _last = now;
            _tokens -= bytes;
            return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _rate);
        }
    }

    public async Task TakeAsync(long bytes, CancellationToken ct)
    {
        var wait = Take(bytes);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, ct);
        }
    }
}
