using System.Collections.Concurrent;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Tests.Common;

/// <summary>
/// The inline-socket-completions switch of the data-path processes: an operator's value of the variable wins,
/// else the process sets it for itself, and a server child started through <see cref="ChildProcess"/> (a master
/// under `feitian up`) does not inherit what its parent set. The child is a real /bin/sh printing its environment.
/// </summary>
public sealed class InlineSocketCompletionsTests
{
    [Fact]
    public async Task An_operators_value_wins_else_the_process_sets_it_and_its_children_do_not_inherit_it()
    {
        var before = Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable);
        try
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, "0");
            InlineSocketCompletions.EnableUnlessSet();
            Assert.Equal("0", Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable));

            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, null);
            InlineSocketCompletions.EnableUnlessSet();
            Assert.Equal("1", Environment.GetEnvironmentVariable(InlineSocketCompletions.Variable));
            Assert.True(InlineSocketCompletions.SetHere);

            var lines = new ConcurrentQueue<string>();
            using var child = ChildProcess.Start("env-probe", "/bin/sh",
                ["-c", $"echo \"inline=${{{InlineSocketCompletions.Variable}-unset}} watch=${{{ParentProcessWatch.EnvironmentVariable}-unset}}\""], new LineLogger(lines));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await child.WaitForExitAsync(timeout.Token);
            var line = Assert.Single(lines, l => l.StartsWith("[env-probe] ", StringComparison.Ordinal));
            Assert.Contains("inline=unset", line);
            Assert.Contains($"watch={Environment.ProcessId}", line); // the rest of the child's environment is as before
        }
        finally
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions.Variable, before);
        }
    }

    private sealed class LineLogger(ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue(formatter(state, exception));
    }
}
