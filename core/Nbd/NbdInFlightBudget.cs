namespace FeitianK8s.Core.Nbd;

/// <summary>
/// Bounds the requests and buffer bytes one connection holds at once. Only the connection's reader
/// acquires (so there is at most one waiter); request completions release. A single request may
/// exceed the byte budget when nothing else is in flight, so it can never deadlock.
/// </summary>
internal sealed class NbdInFlightBudget(int maxRequests, long maxBytes)
{
    private readonly object _gate = new();
    private int _count;
    private long _bytes;
    private TaskCompletionSource? _waiter;
    private long _waiterCost;
    private TaskCompletionSource? _drained;

    public int Count { get { lock (_gate) return _count; } }

    public async ValueTask AcquireAsync(long cost, CancellationToken ct)
    {
        TaskCompletionSource waiter;
        lock (_gate)
        {
            if (Fits(cost))
            {
                _count++;
                _bytes += cost;
                return;
            }
            waiter = _waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiterCost = cost;
        }
        try
        {
            await waiter.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            bool granted;
            lock (_gate)
            {
                granted = _waiter != waiter;
                if (!granted)
                    _waiter = null;
            }
            if (granted)
                Release(cost);
            throw;
        }
    }

    public void Release(long cost)
    {
        TaskCompletionSource? wake = null, drained = null;
        lock (_gate)
        {
            _count--;
            _bytes -= cost;
            if (_waiter is not null && Fits(_waiterCost))
            {
                _count++;
                _bytes += _waiterCost;
                wake = _waiter;
                _waiter = null;
            }
            if (_count == 0)
            {
                drained = _drained;
                _drained = null;
            }
        }
        wake?.TrySetResult();
        drained?.TrySetResult();
    }

    public Task WaitForDrainAsync()
    {
        lock (_gate)
        {
            if (_count == 0)
                return Task.CompletedTask;
            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task;
        }
    }

    private bool Fits(long cost) => _count < maxRequests && (_count == 0 || _bytes + cost <= maxBytes);
}
