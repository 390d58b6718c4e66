using FeitianK8s.Master.Cluster;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Declares a chunk server dead after <c>--dead-after</c> without a heartbeat (for re-replication; allocation
/// keeps its own shorter liveness timeout). A master that just started or just became leader knows no
/// (or only stale) heartbeats, so nothing is declared dead before it has led for <c>deadAfter</c> itself.
/// A server replaced by a new one on its address (a lost data directory, the server started again empty
/// with a new id) is dead at once: nothing can answer for the old id there any more.
/// </summary>
public sealed class DeadServerDetector(ChunkServerLiveness liveness, TimeProvider clock, TimeSpan deadAfter)
{
    private DateTimeOffset _started = clock.GetUtcNow();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _superseded = new(StringComparer.Ordinal);

    /// <summary>
    /// Another server registered on <paramref name="chunkServerId"/>'s address: it is dead from now on,
    /// unless it heartbeats again later (then the address was only reused for a while).
    /// </summary>
    public void Supersede(string chunkServerId) => _superseded[chunkServerId] = clock.GetUtcNow();

    /// <summary>This master became leader: heartbeats seen before now went to another master, if at all.</summary>
    public void Restart() => _started = clock.GetUtcNow();

    public TimeSpan DeadAfter => deadAfter;

    public bool IsDead(string chunkServerId)
    {
        var now = clock.GetUtcNow();
        var sample = liveness.Last(chunkServerId)?.At;
        if (_superseded.TryGetValue(chunkServerId, out var replacedAt) && (sample is null || sample < replacedAt))
        {
            return true;
        }
        var last = sample is { } at && at > _started ? at : _started;
        return now - last > deadAfter;
    }
}
