using System.Diagnostics;

namespace FeitianK8s.ChunkServer.Replication;

/// <summary>
/// Balances rebuild traffic against foreground I/O on this chunk server (AIMD). Every foreground append and
/// read reports its latency; a fast EWMA (α = 0.2 per operation) follows the current latency and a slow one
/// (α = 0.01, allowed to rise by at most 1 % per step) is the baseline. Once per <see cref="Step"/>:
/// <list type="bullet">
/// <item>fast &gt; 1.5 × baseline and fast − baseline &gt; 1 ms: the share halves (multiplicative decrease, down to
/// <see cref="MinShare"/>);</item>
/// <item>otherwise: the share grows by 0.1 (additive increase, up to 1).</item>
/// </list>
/// Rebuild copies on this server run at share × their budgeted speed (<see cref="RebuildBudget.ChargeAsync"/>).
/// </summary>
public sealed class AdaptiveRebuildShare(Func<TimeSpan>? clock = null)
{
    public const double MinShare = 1.0 / 16;
    public static readonly TimeSpan Step = TimeSpan.FromSeconds(1);
    private const double FastAlpha = 0.2;
    private const double SlowAlpha = 0.01;
    private const double Threshold = 1.5;
    private const double MinRiseSeconds = 0.001;
    private const double Increase = 0.1;

    private readonly Func<TimeSpan> _clock = clock ?? (() => Stopwatch.GetElapsedTime(0));
    private readonly Lock _gate = new();
    private double _fast;
    private double _baseline;
    private double _share = 1;
    private TimeSpan _lastStep = TimeSpan.MinValue;

    /// <summary>Records one foreground operation's latency.</summary>
    public void Observe(TimeSpan latency)
    {
        var seconds = latency.TotalSeconds;
        lock (_gate)
        {
            if (_baseline == 0)
            {
                _fast = _baseline = seconds;
                return;
            }
            _fast += FastAlpha * (seconds - _fast);
            var next = _baseline + SlowAlpha * (seconds - _baseline);
            _baseline = Math.Min(next, _baseline * 1.01);
        }
    }

    public double ForegroundLatencySeconds { get { lock (_gate) { return _fast; } } }

    public double BaselineLatencySeconds { get { lock (_gate) { return _baseline; } } }

    /// <summary>The current share (0..1], stepping the rule when a step has passed.</summary>
    public double Share
    {
        get
        {
            lock (_gate)
            {
                var now = _clock();
                if (_lastStep == TimeSpan.MinValue)
                {
                    _lastStep = now;
                }
                while (now - _lastStep >= Step)
                {
                    _lastStep += Step;
                    var congested = _baseline > 0 && _fast > Threshold * _baseline && _fast - _baseline > MinRiseSeconds;
                    _share = congested ? Math.Max(MinShare, _share / 2) : Math.Min(1, _share + Increase);
                    if (now - _lastStep > 10 * Step)
                    {
                        _lastStep = now; // idle for long: one step is enough
                    }
                }
                return _share;
            }
        }
    }
}
