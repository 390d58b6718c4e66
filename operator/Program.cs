using FeitianK8s.Operator;
using Microsoft.Extensions.Logging;

OperatorOptions options;
try
{
    options = OperatorOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}\n{OperatorOptions.Usage}");
    return 2;
}

using var loggerFactory = LoggerFactory.Create(b => b
    .SetMinimumLevel(options.LogLevel)
    .AddFilter("Microsoft", LogLevel.Warning)
    .AddFilter("System.Net.Http", LogLevel.Warning)
    .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }));
var logger = loggerFactory.CreateLogger("FeitianK8s.Operator");
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
{
    c.Cancel = true;
    stop.Cancel();
});

OperatorHost host;
try
{
    host = new OperatorHost(options, OperatorHost.LoadConfig(options), loggerFactory);
    await host.StartAsync();
}
catch (Exception e)
{
    logger.LogCritical(e, "Operator failed to start");
    return 1;
}
await using (host)
{
    try
    {
        await Task.WhenAny(host.Completion, Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default));
        if (host.Completion.IsFaulted)
        {
            logger.LogCritical(host.Completion.Exception, "Operator stopped");
            return 1;
        }
    }
    finally
    {
        logger.LogInformation("Operator shutting down");
    }
}
return 0;
