using FeitianK8s.Master.Cluster;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Declares a chunk server dead after <c>--dead-after</c> without a heartbeat (for re-replication; allocation
/// keeps its own shorter liveness timeout). A master that just started knows no heartbeat yet, so nothing is
/// declared dead before it has been up for <c>deadAfter</c> itself.
/// </summary>
public sealed class DeadServerDetector(ChunkServerLiveness liveness, TimeProvider clock, TimeSpan deadAfter)
{
    private readonly DateTimeOffset _started = clock.GetUtcNow();

    public TimeSpan DeadAfter => deadAfter;

    public bool IsDead(string chunkServerId)
    {
        var now = clock.GetUtcNow();
        var last = liveness.Last(chunkServerId)?.At ?? _started;
        return now - last > deadAfter;
    }
}
