using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Tests.Support;

/// <summary>Routes server logs to the test's output (ASP.NET Core chatter only from Warning up).</summary>
public static class TestLogging
{
    public static ILoggerFactory For(ITestOutputHelper output) => LoggerFactory.Create(logging => logging
        .SetMinimumLevel(LogLevel.Debug)
        .AddFilter("Microsoft", LogLevel.Warning)
        .AddFilter("Grpc", LogLevel.Warning)
        .AddProvider(new OutputLoggerProvider(output)));

    private sealed class OutputLoggerProvider(ITestOutputHelper output) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new OutputLogger(output, categoryName[(categoryName.LastIndexOf('.') + 1)..]);

        public void Dispose()
        {
        }
    }

    private sealed class OutputLogger(ITestOutputHelper output, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            try
            {
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {category}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception.GetType().Name + ": " + exception.Message)}");
            }
            catch (InvalidOperationException)
            {
                // The test already finished; a late background log line has nowhere to go.
            }
        }
    }
}
