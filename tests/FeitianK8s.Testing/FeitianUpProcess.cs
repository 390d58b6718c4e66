using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using FeitianK8s.Core.Cluster;

namespace FeitianK8s.Testing;

/// <summary>
/// `feitian up --data DIR --nbd-port 0` as a real process: master, chunk servers and the
/// NBD server exactly as a user runs them. Parses the NBD port it prints, runs other CLI
/// commands against the same DIR, and stops it cleanly (SIGTERM) or crashes it (SIGKILL).
/// The test project must reference cli/ so the `feitian` program sits in its output directory.
/// </summary>
public sealed partial class FeitianUpProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ITestOutputHelper _output;
    private readonly TaskCompletionSource<int> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentQueue<string> _stderr = new();
    private bool _disposed;

    private FeitianUpProcess(Process process, ITestOutputHelper output, string dataDir)
    {
        _process = process;
        _output = output;
        DataDir = dataDir;
    }

    public string DataDir { get; }
    public int Pid => _process.Id;
    public int NbdPort { get; private set; }
    /// <summary>
    /// The web console URL `up` printed ("console: URL"): with TLS its token proxy, e.g.
    /// http://127.0.0.1:40123/?token=HEX; with --insecure a master's HTTP port, e.g. http://127.0.0.1:40123/.
    /// </summary>
    public string? ConsoleUrl { get; private set; }
    /// <summary>/metrics of the `up` process itself (volume engines and NBD server), e.g. http://127.0.0.1:40124/metrics.</summary>
    public string? ProcessMetricsUrl { get; private set; }
    /// <summary>What `up` wrote to standard error so far (its progress lines and warnings).</summary>
    public IReadOnlyList<string> StandardErrorLines => [.. _stderr];
    public string UnixSocketPath => Path.Combine(DataDir, "nbd.sock");
    public bool HasExited => _process.HasExited;

    public string NbdUri(string volume) => $"nbd://127.0.0.1:{NbdPort}/{volume}";

    /// <summary>
    /// Starts `feitian up` on DIR (4 MiB chunks, 6 chunk servers on 3 racks unless <paramref name="extraArguments"/> override) and waits until it serves NBD.
    /// <paramref name="workingDirectory"/> is the current directory of `up` and so of every server it starts (default: the test's).
    /// </summary>
    public static async Task<FeitianUpProcess> StartAsync(ITestOutputHelper output, string dataDir, IEnumerable<string>? extraArguments = null, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        var extra = extraArguments?.ToList() ?? [];
        var arguments = new List<string> { "up", "--data", dataDir, "--nbd-port", "0" };
        AddDefault(arguments, extra, "--chunk-size", "4MiB");
        // One master unless a test asks for more (`up` defaults to 3): most tests are about
        // other things, and three Raft members cost CPU on a 2-core machine.
        AddDefault(arguments, extra, "--masters", "1");
        AddDefault(arguments, extra, "--chunkservers", "6");
        AddDefault(arguments, extra, "--racks", "3");
        arguments.AddRange(extra);
        var process = StartFeitian(output, arguments, redirectOutput: true, workingDirectory);
        var up = new FeitianUpProcess(process, output, dataDir);
        up.PumpOutput();
        var wait = timeout ?? TimeSpan.FromSeconds(90);
        var exited = process.WaitForExitAsync();
        var first = await Task.WhenAny(up._ready.Task, exited, Task.Delay(wait));
        if (first != up._ready.Task)
        {
            var reason = first == exited ? $"exited with {process.ExitCode}" : $"was not ready within {wait}";
            await up.DisposeAsync();
            throw new InvalidOperationException($"feitian up on {dataDir} {reason}; stderr: {string.Join(Environment.NewLine, up._stderr)}");
        }
        up.NbdPort = await up._ready.Task;
        return up;
    }

    /// <summary>Runs `feitian ARGS --data DIR` and returns its exit code and output.</summary>
    public Task<ToolResult> RunCliAsync(params string[] arguments) => RunCliAsync(_output, DataDir, arguments);

    public static Task<ToolResult> RunCliAsync(ITestOutputHelper output, string dataDir, params string[] arguments)
    {
        var feitian = ServerExecutable.Find("feitian");
        return ExternalTool.RunAsync(output, feitian.FileName, [.. feitian.PrefixArguments, .. arguments, "--data", dataDir], TimeSpan.FromSeconds(60));
    }

    /// <summary>Runs a CLI command that must succeed; returns its standard output.</summary>
    public async Task<string> RunCliCheckedAsync(params string[] arguments)
    {
        var result = await RunCliAsync(arguments);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"feitian {string.Join(' ', arguments)} exited {result.ExitCode}: {result.StandardError.Trim()}");
        }
        return result.StandardOutput;
    }

    /// <summary>SIGTERM, then waits for a clean stop (the cluster checkpoints and closes every volume).</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (_process.HasExited)
        {
            return;
        }
        var descendants = Descendants(_process.Id);
        await ExternalTool.RunAsync(_output, "kill", ["-TERM", _process.Id.ToString()], TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"feitian up (pid {_process.Id}) did not stop within {timeout ?? TimeSpan.FromSeconds(60)} after SIGTERM");
        }
        ExternalTool.SafeWrite(_output, $"feitian up (pid {_process.Id}) stopped with exit code {_process.ExitCode}");
        await WaitGoneAsync(descendants);
    }

    /// <summary>
    /// SIGKILL of the `up` process only, as a crash would: its NBD server and volume engines die
    /// without a word; the master and chunk servers notice their parent is gone and stop on their
    /// own. Returns once every one of them is gone, so the same DIR can be started again.
    /// </summary>
    public async Task KillAsync()
    {
        if (_process.HasExited)
        {
            return;
        }
        var descendants = Descendants(_process.Id);
        _process.Kill(entireProcessTree: false);
        await _process.WaitForExitAsync();
        ExternalTool.SafeWrite(_output, $"feitian up (pid {_process.Id}) killed with SIGKILL; waiting for {descendants.Count} servers to notice");
        await WaitGoneAsync(descendants);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (!_process.HasExited)
        {
            var descendants = Descendants(_process.Id);
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            await WaitGoneAsync(descendants);
        }
        _process.Dispose();
    }

    private static void AddDefault(List<string> arguments, List<string> extra, string option, string value)
    {
        if (!extra.Contains(option))
        {
            arguments.Add(option);
            arguments.Add(value);
        }
    }

    private static Process StartFeitian(ITestOutputHelper output, IEnumerable<string> arguments, bool redirectOutput, string? workingDirectory)
    {
        var feitian = ServerExecutable.Find("feitian");
        var start = new ProcessStartInfo(feitian.FileName)
        {
            RedirectStandardOutput = redirectOutput,
            RedirectStandardError = redirectOutput,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var argument in feitian.PrefixArguments.Concat(arguments))
        {
            start.ArgumentList.Add(argument);
        }
        ExternalTool.SafeWrite(output, $"$ {feitian.FileName} {string.Join(' ', start.ArgumentList)}");
        return Process.Start(start) ?? throw new InvalidOperationException($"could not start {feitian.FileName}");
    }

    private void PumpOutput()
    {
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            ExternalTool.SafeWrite(_output, $"[up {_process.Id}] {e.Data}");
            if (e.Data.StartsWith("metrics ", StringComparison.Ordinal))
            {
                ProcessMetricsUrl = e.Data["metrics ".Length..].Trim().Split(' ')[0];
            }
            if (e.Data.StartsWith("console: ", StringComparison.Ordinal))
            {
                ConsoleUrl = e.Data["console: ".Length..].Trim();
            }
            var match = NbdLine().Match(e.Data);
            if (match.Success)
            {
                _ready.TrySetResult(int.Parse(match.Groups[1].Value));
            }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            _stderr.Enqueue(e.Data);
            ExternalTool.SafeWrite(_output, $"[up {_process.Id} stderr] {e.Data}");
        };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>
    /// The pid of the live server `up` runs on DIR/<paramref name="server"/> (e.g. "master",
    /// "chunkserver-1"), found by its `--data` argument among this process's descendants; null when none runs.
    /// </summary>
    public int? ServerPid(string server)
    {
        var dataDir = Path.Combine(DataDir, server);
        foreach (var pid in Descendants(_process.Id).Where(IsAlive))
        {
            try
            {
                var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
                var data = Array.IndexOf(args, "--data");
                if (data >= 0 && data + 1 < args.Length && args[data + 1] == dataDir)
                {
                    return pid;
                }
            }
            catch (IOException)
            {
                // It ended while we looked.
            }
        }
        return null;
    }

    /// <summary>The `up` process and every live process below it (its master, chunk servers, ...).</summary>
    public IReadOnlyList<int> ProcessTree() => [_process.Id, .. Descendants(_process.Id).Where(IsAlive)];

    /// <summary>True while <paramref name="pid"/> is a live (not zombie) process.</summary>
    public static bool IsRunning(int pid) => IsAlive(pid);

    /// <summary>Every process below <paramref name="root"/> (from /proc), so a kill can wait for them.</summary>
    private static List<int> Descendants(int root)
    {
        var parents = new Dictionary<int, int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // pid (comm) state ppid ...; comm may hold spaces, so parse after the last ')'.
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                parents[pid] = int.Parse(fields[1]);
            }
            catch (Exception e) when (e is IOException or FormatException or ArgumentOutOfRangeException or UnauthorizedAccessException)
            {
                // The process ended while we looked.
            }
        }
        var result = new List<int>();
        var frontier = new Queue<int>([root]);
        while (frontier.TryDequeue(out var parent))
        {
            foreach (var child in parents.Where(p => p.Value == parent).Select(p => p.Key))
            {
                result.Add(child);
                frontier.Enqueue(child);
            }
        }
        return result;
    }

    private async Task WaitGoneAsync(List<int> pids)
    {
        var deadline = Stopwatch.StartNew();
        while (pids.Any(IsAlive))
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                foreach (var pid in pids.Where(IsAlive))
                {
                    ExternalTool.SafeWrite(_output, $"server pid {pid} outlived its launcher by 30 s; killing it");
                    try
                    {
                        Process.GetProcessById(pid).Kill();
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidOperationException)
                    {
                    }
                }
            }
            await Task.Delay(100);
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"^nbd\s+nbd://127\.0\.0\.1:(\d+)/")]
    private static partial Regex NbdLine();
}
