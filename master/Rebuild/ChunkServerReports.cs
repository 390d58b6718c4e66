using System.Collections.Concurrent;
using FeitianK8s.Proto.Master;

namespace FeitianK8s.Master.Rebuild;

/// <summary>Soft state from the last heartbeat of each chunk server that the status shows: scrub progress and rebuild share.</summary>
public sealed class ChunkServerReports
{
    private readonly ConcurrentDictionary<string, (ScrubProgress? Scrub, RebuildShare? Share)> _last = new(StringComparer.Ordinal);

    public void Record(string chunkServerId, ScrubProgress? scrub, RebuildShare? share) => _last[chunkServerId] = (scrub, share);

    public ScrubProgress? Scrub(string chunkServerId) => _last.TryGetValue(chunkServerId, out var r) ? r.Scrub : null;

    public RebuildShare? Share(string chunkServerId) => _last.TryGetValue(chunkServerId, out var r) ? r.Share : null;
}
