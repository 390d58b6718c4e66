using System.Runtime.InteropServices;
using FeitianK8s.Master;
using FeitianK8s.Master.Hosting;
using Microsoft.Extensions.Logging;

using var loggers = LoggerFactory.Create(logging => logging
    .AddSimpleConsole(console => { console.SingleLine = true; console.TimestampFormat = "HH:mm:ss.fff "; })
    .SetMinimumLevel(LogLevel.Information)
    .AddFilter("Microsoft.AspNetCore", LogLevel.Warning)
    .AddFilter("Microsoft.Hosting", LogLevel.Warning)
    .AddFilter("Grpc.AspNetCore", LogLevel.Warning));
var logger = loggers.CreateLogger("FeitianK8s.Master");

MasterOptions options;
try
{
    options = CommandLine.Parse(args);
}
catch (ArgumentException error)
{
    Console.Error.WriteLine($"error: {error.Message}");
    Console.Error.WriteLine(CommandLine.Usage);
    return 2;
}

using var stop = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.Cancel();
}
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
// Launched by `feitian up`: stop with the launcher, even when it was killed.
FeitianK8s.Core.Cluster.ParentProcessWatch.StartIfRequested(stop.Cancel);

MasterHost host;
try
{
    host = await MasterHost.StartAsync(options, loggers, stop.Token);
    var endpoints = new FeitianK8s.Core.Cluster.ServerEndpoints("master", host.GrpcAddress, host.HttpAddress).Write(options.DataDirectory);
    logger.LogInformation("Master ready: grpc {GrpcAddress}, http {HttpAddress} (written to {Endpoints})", host.GrpcAddress, host.HttpAddress, endpoints);
}
catch (Exception error)
{
    logger.LogCritical(error, "Master failed to start");
    Console.Error.WriteLine($"error: master failed to start: {error.Message}");
    return 1;
}

await using (host)
{
    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
        logger.LogInformation("Stopping on signal");
    }
}
logger.LogInformation("Master stopped");
return 0;
