using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Cluster;

/// <summary>
/// One server child process: stdout and stderr forwarded line by line to a logger,
/// SIGTERM for a clean stop, SIGKILL for faults. Every live child is also killed when
/// this process exits, so a crashed test host leaves no servers behind.
/// </summary>
public sealed partial class ChildProcess : IDisposable
{
    private const int SigTerm = 15;
    private static readonly ConcurrentDictionary<int, Process> Live = new();
    private readonly Process _process;
    private readonly ILogger _logger;

    static ChildProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var p in Live.Values)
            {
                try
                {
                    p.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // already gone
                }
            }
        };
    }

    private ChildProcess(string name, Process process, ILogger logger)
    {
        Name = name;
        _process = process;
        _logger = logger;
    }

    public string Name { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    public static ChildProcess Start(string name, string fileName, IEnumerable<string> arguments, ILogger logger)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
        };
        // Lets the child stop itself when this process dies without a chance to stop it (see ParentProcessWatch).
        info.Environment[ParentProcessWatch.EnvironmentVariable] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                logger.LogInformation("[{Child}] {Line}", name, e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                logger.LogWarning("[{Child}!] {Line}", name, e.Data);
            }
        };
        if (!process.Start())
        {
            throw new InvalidOperationException($"could not start {name}: {fileName}");
        }
        Live[process.Id] = process;
        process.Exited += (_, _) => Live.TryRemove(process.Id, out _);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        logger.LogInformation("started {Child} (pid {Pid}): {File} {Args}", name, process.Id, fileName, string.Join(' ', info.ArgumentList));
        return new ChildProcess(name, process, logger);
    }

    /// <summary>SIGKILL: the process gets no chance to flush or clean up.</summary>
    public void Kill()
    {
        if (_process.HasExited)
        {
            return;
        }
        _logger.LogInformation("killing {Child} (pid {Pid}) with SIGKILL", Name, Pid);
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // exited meanwhile
        }
        _process.WaitForExit(10_000);
        Live.TryRemove(_process.Id, out _);
    }

    /// <summary>SIGTERM, then SIGKILL if the process has not exited within the timeout.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return;
        }
        _ = SendSignal(_process.Id, SigTerm);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            _logger.LogInformation("{Child} (pid {Pid}) stopped with exit code {Code}", Name, Pid, _process.ExitCode);
        }
        catch (OperationCanceledException)
        {
            _logger.LogWarning("{Child} (pid {Pid}) ignored SIGTERM for {Timeout}; killing it", Name, Pid, timeout);
            Kill();
        }
        Live.TryRemove(_process.Id, out _);
    }

    public Task WaitForExitAsync(CancellationToken ct) => _process.WaitForExitAsync(ct);

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
