using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Cluster;

/// <summary>
/// Restarts server processes that die (so a `feitian up` laptop cluster heals itself): each
/// watched server is started again, on its same ports, after a backoff that starts at
/// <see cref="InitialBackoff"/> and doubles up to <see cref="MaxBackoff"/>; it falls back to the
/// start once a run stayed up for <see cref="HealthyAfter"/>. <see cref="StopAsync"/> ends the
/// watching before the servers are stopped on purpose.
/// </summary>
public sealed class ChildSupervisor : IAsyncDisposable
{
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _watchers = [];
    private int _restarts;

    public ChildSupervisor(ILogger logger)
    {
        _logger = logger;
    }

    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan HealthyAfter { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Restarts done so far, over every watched server.</summary>
    public int Restarts => Volatile.Read(ref _restarts);

    /// <summary>
    /// Watches one server: <paramref name="current"/> gives its live process, <paramref name="restart"/>
    /// starts it again (on its previous ports) once it died.
    /// </summary>
    public void Watch(string name, Func<ChildProcess?> current, Func<CancellationToken, Task> restart)
    {
        lock (_watchers)
        {
            _watchers.Add(Task.Run(() => WatchAsync(name, current, restart, _stopping.Token)));
        }
    }

    private async Task WatchAsync(string name, Func<ChildProcess?> current, Func<CancellationToken, Task> restart, CancellationToken ct)
    {
        var backoff = InitialBackoff;
        var startedAt = DateTime.UtcNow;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var process = current();
                if (process is not null && !process.HasExited)
                {
                    await process.WaitForExitAsync(ct);
                }
                if (ct.IsCancellationRequested)
                {
                    return;
                }
                if (DateTime.UtcNow - startedAt >= HealthyAfter)
                {
                    backoff = InitialBackoff;
                }
                _logger.LogWarning("{Server} (pid {Pid}) exited with code {Code}; restarting it in {Backoff}",
                    name, process?.Pid, process?.ExitCode, backoff);
                await Task.Delay(backoff, ct);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                try
                {
                    await restart(ct);
                    startedAt = DateTime.UtcNow;
                    Interlocked.Increment(ref _restarts);
                    _logger.LogWarning("{Server} restarted (pid {Pid})", name, current()?.Pid);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    _logger.LogError(e, "restarting {Server} failed; trying again in {Backoff}", name, backoff);
                    // current() still names the dead process, so the loop waits the backoff and tries again.
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Stops watching (servers stopped after this are not restarted).</summary>
    public async Task StopAsync()
    {
        await _stopping.CancelAsync();
        Task[] watchers;
        lock (_watchers)
        {
            watchers = [.. _watchers];
        }
        await Task.WhenAll(watchers);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stopping.Dispose();
    }
}
