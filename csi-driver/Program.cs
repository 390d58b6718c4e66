using FeitianK8s.Csi;
using FeitianK8s.Csi.Node;
using FeitianK8s.Csi.Agent;
using Microsoft.Extensions.Logging;

// Three roles: the CSI driver (default); the node's volume-host agent (--mode volume-host), which
// runs the staged volumes' data-path processes for the node plugin; or the data path of one staged
// volume (--serve-volume), started as a separate process by the agent or the node plugin.
if (args.Contains("--serve-volume"))
{
    return await ServeVolumeAsync(args);
}

if (VolumeHostAgentOptions.IsAgentMode(args))
{
    return await RunAgentAsync(args);
}

CsiDriverOptions options;
try
{
    options = CsiDriverOptions.Parse(args);
}
catch (ArgumentException e)
{
    await Console.Error.WriteLineAsync($"csi-driver: {e.Message}");
    await Console.Error.WriteLineAsync("usage: csi-driver --endpoint unix:///path/csi.sock --mode controller|node|all --node-id NODE --masters HOST:PORT[,...] [--rack RACK] [--state-dir DIR] [--max-volumes N] [--master-wait SECONDS] [--node-lease-seconds N] [--snapshot-endpoint URL --snapshot-bucket NAME [--snapshot-region REGION]] [--metrics-port PORT] [--volume-host-agent PATH]");
    return 2;
}
try
{
    await using var host = CsiDriverHost.Create(options);
    await host.StartAsync();
    // WebApplication handles SIGTERM/SIGINT: WaitForShutdown returns after a clean stop.
    await host.WaitForShutdownAsync();
    return 0;
}
catch (Exception e)
{
    await Console.Error.WriteLineAsync($"csi-driver: start-up failed: {e}");
    return 1;
}

static async Task<int> ServeVolumeAsync(string[] args)
{
    string Value(string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{name} is required");
    using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; }));
    using var stop = new CancellationTokenSource();
    using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
    using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
    try
    {
        var masterWait = args.Contains("--master-wait") ? CsiDriverOptions.ParseMasterWait(Value("--master-wait")) : TimeSpan.FromSeconds(60);
        string? Optional(string name) => args.Contains(name) ? Value(name) : null;
        var tls = FeitianK8s.Core.Security.ComponentTls.FromFlags(Optional("--tls-ca"), Optional("--tls-cert"), Optional("--tls-key"))
            ?.WithLogger(loggers.CreateLogger("FeitianK8s.Csi.Tls"));
        return await VolumeHost.RunAsync(Value("--serve-volume"), Value("--socket"), CsiDriverOptions.ParseMasters(Value("--masters")), Value("--node-id"), args.Contains("--read-only"),
            masterWait, loggers, stop.Token, tls);
    }
    catch (Exception e) when (e is not OperationCanceledException)
    {
        loggers.CreateLogger("FeitianK8s.Csi.VolumeHost").LogCritical(e, "Volume host failed");
        return 1;
    }
}

static async Task<int> RunAgentAsync(string[] args)
{
    VolumeHostAgentOptions options;
    try
    {
        options = VolumeHostAgentOptions.Parse(args);
    }
    catch (ArgumentException e)
    {
        await Console.Error.WriteLineAsync($"csi-driver: {e.Message}");
        await Console.Error.WriteLineAsync("usage: csi-driver --mode volume-host --agent-socket PATH --node-id NODE --masters HOST:PORT[,...] [--state-dir DIR] [--master-wait SECONDS] [--tls-ca F --tls-cert F --tls-key F]");
        return 2;
    }
    try
    {
        await using var host = VolumeHostAgentHost.Create(options);
        await host.StartAsync();
        await host.WaitForShutdownAsync();
        return 0;
    }
    catch (Exception e)
    {
        await Console.Error.WriteLineAsync($"csi-driver: volume-host agent start-up failed: {e}");
        return 1;
    }
}
