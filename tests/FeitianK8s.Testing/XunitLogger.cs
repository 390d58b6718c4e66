using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace FeitianK8s.Testing;

/// <summary>Writes log lines to the running test's output (dropped once the test has finished).</summary>
public sealed class XunitLoggerProvider(ITestOutputHelper output, LogLevel minimum = LogLevel.Information) : ILoggerProvider
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public ILogger CreateLogger(string categoryName) => new XunitLogger(this, ShortName(categoryName));

    public void Dispose()
    {
    }

    /// <summary>A logger factory for one test: Information and up, noisy framework categories at Warning.</summary>
    public static ILoggerFactory CreateFactory(ITestOutputHelper output, LogLevel minimum = LogLevel.Information) =>
        LoggerFactory.Create(b => b
            .SetMinimumLevel(minimum)
            .AddFilter("Microsoft", LogLevel.Warning)
            .AddFilter("Grpc", LogLevel.Warning)
            .AddFilter("System.Net.Http", LogLevel.Warning)
            .AddProvider(new XunitLoggerProvider(output, minimum)));

    private static string ShortName(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot < 0 ? category : category[(dot + 1)..];
    }

    private void Write(string line)
    {
        try
        {
            output.WriteLine($"{_clock.Elapsed.TotalSeconds,8:F3} {line}");
        }
        catch (InvalidOperationException)
        {
            // The test is over; child processes may still print while they stop.
        }
    }

    private sealed class XunitLogger(XunitLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= provider.Minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            var text = $"{Level(logLevel)} {category}: {formatter(state, exception)}";
            if (exception is not null)
            {
                text += Environment.NewLine + exception;
            }
            provider.Write(text);
        }

        private static string Level(LogLevel level) => level switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        };
    }

    private LogLevel Minimum { get; } = minimum;
}
