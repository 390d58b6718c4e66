using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests.Fake;

/// <summary>
/// Counts the work items the operator's controllers finished, per activity ("Reconcile",
/// "Volume sync") and key ("namespace/name"), from the structured entry QueueWorker logs after
/// each successful run ("{Activity} of {Key}: {Result} ..."). Lets a test wait for "N more
/// reconciles happened" instead of sleeping for a window it hopes is long enough.
/// Read from the structured fields, never from the message text.
/// </summary>
public sealed class CompletedWorkCounter : ILoggerProvider
{
    private readonly ConcurrentDictionary<(string Activity, string Key), int> _counts = new();

    /// <summary>Work items of <paramref name="activity"/> finished so far for <paramref name="key"/>, or for every key when it is null.</summary>
    public int Count(string activity, string? key = null) =>
        _counts.Where(c => c.Key.Activity == activity && (key is null || c.Key.Key == key)).Sum(c => c.Value);

    /// <summary>Waits until at least <paramref name="count"/> work items of the activity have finished; fails with what was seen otherwise.</summary>
    public async Task WaitForCountAsync(string activity, string? key, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Count(activity, key) < count)
        {
            Assert.True(DateTime.UtcNow < deadline,
                $"only {Count(activity, key)} of {count} '{activity}' runs for {key ?? "any key"} finished within {timeout}");
            await Task.Delay(20);
        }
    }

    public ILogger CreateLogger(string categoryName) => new CountingLogger(this);

    public void Dispose()
    {
    }

    private void Record(string activity, string key) => _counts.AddOrUpdate((activity, key), 1, (_, n) => n + 1);

    private sealed class CountingLogger(CompletedWorkCounter counter) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (exception is not null || state is not IReadOnlyList<KeyValuePair<string, object?>> fields)
            {
                return;
            }
            string? activity = null, key = null;
            var hasResult = false;
            foreach (var (name, value) in fields)
            {
                switch (name)
                {
                    case "Activity": activity = value as string; break;
                    case "Key": key = value as string; break;
                    case "Result": hasResult = true; break;
                }
            }
            if (activity is not null && key is not null && hasResult)
            {
                counter.Record(activity, key);
            }
        }
    }
}
