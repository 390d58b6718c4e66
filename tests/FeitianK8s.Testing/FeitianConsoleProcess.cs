using System.Diagnostics;
using FeitianK8s.Core.Cluster;

namespace FeitianK8s.Testing;

/// <summary>
/// `feitian console ARGS` as a real process: waits for the `console: URL` line it prints (the
/// local proxy with its token) and kills it on dispose.
/// </summary>
public sealed class FeitianConsoleProcess : IAsyncDisposable
{
    private readonly Process _process;

    private FeitianConsoleProcess(Process process, string url)
    {
        _process = process;
        Url = url;
    }

    /// <summary>e.g. http://127.0.0.1:40123/?token=HEX</summary>
    public string Url { get; }

    /// <summary>http://127.0.0.1:PORT, without the token.</summary>
    public string Address => new Uri(Url).GetLeftPart(UriPartial.Authority);

    public static async Task<FeitianConsoleProcess> StartAsync(ITestOutputHelper output, IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        var feitian = ServerExecutable.Find("feitian");
        var start = new ProcessStartInfo(feitian.FileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in feitian.PrefixArguments.Concat(["console", .. arguments]))
        {
            start.ArgumentList.Add(argument);
        }
        ExternalTool.SafeWrite(output, $"$ {feitian.FileName} {string.Join(' ', start.ArgumentList)}");
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {feitian.FileName}");
        var url = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            ExternalTool.SafeWrite(output, $"[console {process.Id}] {e.Data}");
            if (e.Data.StartsWith("console: ", StringComparison.Ordinal))
            {
                url.TrySetResult(e.Data["console: ".Length..].Trim());
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                ExternalTool.SafeWrite(output, $"[console {process.Id} stderr] {e.Data}");
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var wait = timeout ?? TimeSpan.FromSeconds(60);
        var first = await Task.WhenAny(url.Task, process.WaitForExitAsync(), Task.Delay(wait));
        if (first != url.Task)
        {
            var reason = process.HasExited ? $"exited with {process.ExitCode}" : $"printed no console URL within {wait}";
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw new InvalidOperationException($"feitian console {reason}");
        }
        return new FeitianConsoleProcess(process, await url.Task);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
