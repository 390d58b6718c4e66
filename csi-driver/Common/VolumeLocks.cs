using System.Collections.Concurrent;

namespace FeitianK8s.Csi.Common;

/// <summary>
/// One lock per volume id: a second operation on a volume that is busy fails at once with
/// ABORTED (the CO retries), operations on different volumes run in parallel.
/// </summary>
public sealed class VolumeLocks
{
    private readonly ConcurrentDictionary<string, string> _busy = new(StringComparer.Ordinal);

    /// <summary>Takes the lock of <paramref name="volumeId"/> for <paramref name="operation"/>, or throws ABORTED.</summary>
    public IDisposable Acquire(string volumeId, string operation)
    {
        if (!_busy.TryAdd(volumeId, operation))
        {
            _busy.TryGetValue(volumeId, out var running);
            throw CsiErrors.Aborted($"an operation ({running ?? "unknown"}) is already running on volume {volumeId}; retry {operation} later");
        }
        return new Release(this, volumeId);
    }

    private sealed class Release(VolumeLocks owner, string volumeId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner._busy.TryRemove(volumeId, out _);
            }
        }
    }
}
