using System.Collections.Concurrent;

namespace FeitianK8s.Master.Cluster;

/// <summary>Soft state reported by a chunk server's last heartbeat (or registration).</summary>
public sealed record HeartbeatSample(DateTimeOffset At, ulong CapacityBytes, ulong UsedBytes, ulong Chunks);

/// <summary>
/// Liveness and load of chunk servers: soft state, never logged. After a master restart it
/// is empty, so no chunk server counts as alive until it heartbeats again.
/// <para>
/// Report grace (like HDFS safe mode): for <see cref="ReportGrace"/> after the master starts or
/// becomes leader (<see cref="StartGrace"/>), a registered chunk server that has not reported yet
/// is "not reported", not dead: allocation that finds too few servers answers Unavailable
/// (retry shortly) instead of ResourceExhausted, and nothing may act on it being dead. The grace
/// ends early once every registered chunk server has reported.
/// </para>
/// </summary>
public sealed class ChunkServerLiveness
{
    private readonly ConcurrentDictionary<string, HeartbeatSample> _samples = new(StringComparer.Ordinal);
    private readonly TimeProvider _clock;
    private readonly TimeSpan _timeout;
    private readonly object _graceLock = new();
    private DateTimeOffset _graceStart;
    private DateTimeOffset _graceEnd;

    public ChunkServerLiveness(TimeProvider clock, TimeSpan timeout, TimeSpan? reportGrace = null)
    {
        _clock = clock;
        _timeout = timeout;
        ReportGrace = reportGrace ?? timeout;
        StartGrace();
    }

    public TimeSpan Timeout => _timeout;

    /// <summary>How long after a start or leader change unreported chunk servers are waited for.</summary>
    public TimeSpan ReportGrace { get; }

    /// <summary>
    /// Starts a report grace period: call when this master starts serving and whenever it becomes
    /// the leader (a new leader's liveness samples are stale or missing).
    /// </summary>
    public void StartGrace()
    {
        var now = _clock.GetUtcNow();
        lock (_graceLock)
        {
            _graceStart = now;
            _graceEnd = now + ReportGrace;
        }
    }

    public void Record(string id, ulong capacityBytes, ulong usedBytes, ulong chunks) =>
        _samples[id] = new HeartbeatSample(_clock.GetUtcNow(), capacityBytes, usedBytes, chunks);

    /// <summary>
    /// Drops a server's sample: it was replaced (a new id registered on its address), so nothing it reported
    /// before may count as alive; only a heartbeat of its own brings it back.
    /// </summary>
    public void Forget(string id) => _samples.TryRemove(id, out _);

    public HeartbeatSample? Last(string id) => _samples.GetValueOrDefault(id);

    public bool IsAlive(string id) => _samples.TryGetValue(id, out var sample) && IsAlive(sample);

    public bool IsAlive(HeartbeatSample sample) => _clock.GetUtcNow() - sample.At <= _timeout;

    /// <summary>
    /// True while the grace period runs and some of <paramref name="registered"/> (the chunk servers
    /// the master knows) has not reported since it began.
    /// </summary>
    public bool InGrace(IEnumerable<string> registered)
    {
        DateTimeOffset start, end;
        lock (_graceLock)
        {
            (start, end) = (_graceStart, _graceEnd);
        }
        return _clock.GetUtcNow() < end && registered.Any(id => !(_samples.TryGetValue(id, out var s) && s.At >= start));
    }
}
