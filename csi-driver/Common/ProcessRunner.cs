using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Common;

public sealed record ProcessResult(int ExitCode, string StdOut, string StdErr)
{
    public bool Ok => ExitCode == 0;
}

/// <summary>Runs system tools (mount, losetup, mkfs, blkid, ...) with a timeout, capturing their output.</summary>
public sealed class ProcessRunner(ILogger<ProcessRunner> logger)
{
    public async Task<ProcessResult> RunAsync(string fileName, IReadOnlyList<string> args, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw CsiErrors.Internal($"cannot run {fileName}: {e.Message} (is it installed?)");
        }
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw CsiErrors.Internal($"{fileName} {string.Join(' ', args)} did not finish within {timeout ?? TimeSpan.FromMinutes(2)}");
        }
        var result = new ProcessResult(process.ExitCode, await stdout, await stderr);
        logger.LogDebug("{Tool} {Args} exited {Code}", fileName, string.Join(' ', args), result.ExitCode);
        return result;
    }

    /// <summary>Runs the tool and throws INTERNAL with its stderr when it fails.</summary>
    public async Task<ProcessResult> RunCheckedAsync(string fileName, IReadOnlyList<string> args, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        var result = await RunAsync(fileName, args, timeout, ct);
        if (!result.Ok)
        {
            throw CsiErrors.Internal($"{fileName} {string.Join(' ', args)} failed with exit code {result.ExitCode}: {result.StdErr.Trim()}");
        }
        return result;
    }
}
