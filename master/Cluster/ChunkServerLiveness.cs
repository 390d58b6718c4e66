using System.Collections.Concurrent;

namespace FeitianK8s.Master.Cluster;

/// <summary>Soft state reported by a chunk server's last heartbeat (or registration).</summary>
public sealed record HeartbeatSample(DateTimeOffset At, ulong CapacityBytes, ulong UsedBytes, ulong Chunks);

/// <summary>
/// Liveness and load of chunk servers: soft state, never logged. After a master restart it
/// is empty, so no chunk server counts as alive until it heartbeats again.
/// </summary>
public sealed class ChunkServerLiveness(TimeProvider clock, TimeSpan timeout)
{
    private readonly ConcurrentDictionary<string, HeartbeatSample> _samples = new(StringComparer.Ordinal);

    public TimeSpan Timeout => timeout;

    public void Record(string id, ulong capacityBytes, ulong usedBytes, ulong chunks) =>
        _samples[id] = new HeartbeatSample(clock.GetUtcNow(), capacityBytes, usedBytes, chunks);

    public HeartbeatSample? Last(string id) => _samples.GetValueOrDefault(id);

    public bool IsAlive(string id) => _samples.TryGetValue(id, out var sample) && IsAlive(sample);

    public bool IsAlive(HeartbeatSample sample) => clock.GetUtcNow() - sample.At <= timeout;
}
