namespace FeitianK8s.Master.Rebuild;

/// <summary>What the rebuild is doing, for status and metrics: counts from the last plan and a copy rate.</summary>
public sealed class RebuildProgress(TimeProvider clock)
{
    private static readonly TimeSpan RateWindow = TimeSpan.FromSeconds(30);
    private readonly Lock _gate = new();
    private readonly Queue<(DateTimeOffset At, ulong Bytes)> _recent = new();
    private DateTimeOffset? _busySince;

    public int UnderReplicatedChunks { get; private set; }
    public ulong BytesRemaining { get; private set; }
    public int CopiesActive { get; private set; }
    public ulong CopiesCompleted { get; private set; }
    public ulong CopiesFailed { get; private set; }
    public ulong BytesCopied { get; private set; }
    public int DeadServers { get; private set; }

    public void RecordPlan(int underReplicated, ulong bytesRemaining, int copiesActive, int deadServers)
    {
        lock (_gate)
        {
            UnderReplicatedChunks = underReplicated;
            BytesRemaining = bytesRemaining;
            CopiesActive = copiesActive;
            DeadServers = deadServers;
            if (underReplicated > 0 || copiesActive > 0)
            {
                _busySince ??= clock.GetUtcNow();
            }
            else
            {
                _busySince = null;
            }
        }
    }

    public void RecordCopy(ulong bytes, bool ok)
    {
        lock (_gate)
        {
            if (!ok)
            {
                CopiesFailed++;
                return;
            }
            CopiesCompleted++;
            BytesCopied += bytes;
            _recent.Enqueue((clock.GetUtcNow(), bytes));
        }
    }

    /// <summary>Bytes of completed copies per second over the last 30 s (or since the rebuild started, if later).</summary>
    public double BytesPerSecond
    {
        get
        {
            lock (_gate)
            {
                var now = clock.GetUtcNow();
                while (_recent.Count > 0 && now - _recent.Peek().At > RateWindow)
                {
                    _recent.Dequeue();
                }
                if (_recent.Count == 0)
                {
                    return 0;
                }
                var since = _busySince is { } busy && now - busy < RateWindow ? now - busy : RateWindow;
                var seconds = Math.Max(1, since.TotalSeconds);
                return _recent.Sum(r => (double)r.Bytes) / seconds;
            }
        }
    }
}
