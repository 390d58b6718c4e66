using System.Runtime.InteropServices;
using FeitianK8s.ChunkServer;
using FeitianK8s.ChunkServer.Hosting;
using Microsoft.Extensions.Logging;

ChunkServerOptions options;
try
{
    options = CommandLine.Parse(args);
}
catch (FormatException error)
{
    Console.Error.WriteLine($"chunkserver: {error.Message}");
    Console.Error.WriteLine(CommandLine.Usage);
    return 2;
}

using var loggers = LoggerFactory.Create(logging => logging
    .AddSimpleConsole(console => { console.SingleLine = true; console.TimestampFormat = "HH:mm:ss.fff "; })
    .AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
    .AddFilter("Grpc", LogLevel.Warning));

ChunkServerHost host;
try
{
    host = await ChunkServerHost.StartAsync(options, loggers);
}
catch (Exception error)
{
    Console.Error.WriteLine($"chunkserver: failed to start: {error.Message}");
    return 1;
}

var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.TrySetResult();
}
using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal))
using (PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal))
{
    // Launched by `feitian up`: stop with the launcher, even when it was killed.
    FeitianK8s.Core.Cluster.ParentProcessWatch.StartIfRequested(() => stop.TrySetResult());
    await stop.Task;
}
await host.DisposeAsync();
return 0;
