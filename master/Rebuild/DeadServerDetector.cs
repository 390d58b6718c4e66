using FeitianK8s.Master.Cluster;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Declares a chunk server dead after <c>--dead-after</c> without a heartbeat (for re-replication; allocation
/// keeps its own shorter liveness timeout). A master that just started or just became leader knows no
/// (or only stale) heartbeats, so nothing is declared dead before it has led for <c>deadAfter</c> itself.
/// </summary>
public sealed class DeadServerDetector(ChunkServerLiveness liveness, TimeProvider clock, TimeSpan deadAfter)
{
    private DateTimeOffset _started = clock.GetUtcNow();

    /// <summary>This master became leader: heartbeats seen before now went to another master, if at all.</summary>
    public void Restart() => _started = clock.GetUtcNow();

    public TimeSpan DeadAfter => deadAfter;

    public bool IsDead(string chunkServerId)
    {
        var now = clock.GetUtcNow();
        var sample = liveness.Last(chunkServerId)?.At;
        var last = sample is { } at && at > _started ? at : _started;
        return now - last > deadAfter;
    }
}
