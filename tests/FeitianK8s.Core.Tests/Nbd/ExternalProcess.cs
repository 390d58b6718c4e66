using System.Diagnostics;
using System.Text;

namespace FeitianK8s.Core.Tests.Nbd;

public sealed record ProcessResult(int ExitCode, string StandardOutput, string StandardError);

/// <summary>Runs a real command line tool with a timeout; the whole process tree is killed on timeout or cancellation.</summary>
internal static class ExternalProcess
{
    public static async Task<ProcessResult> RunAsync(ITestOutputHelper output, string fileName, IEnumerable<string> arguments, TimeSpan timeout, byte[]? stdin = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        output.WriteLine($"$ {fileName} {string.Join(' ', start.ArgumentList)}");
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {fileName}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.BaseStream.WriteAsync(stdin);
            process.StandardInput.Close();
        }
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new TimeoutException($"{fileName} did not finish within {timeout}; stderr: {await stderr}");
        }
        var result = new ProcessResult(process.ExitCode, await stdout, await stderr);
        output.WriteLine($"exit {result.ExitCode}");
        if (result.StandardOutput.Length > 0)
            output.WriteLine(Trim(result.StandardOutput));
        if (result.StandardError.Length > 0)
            output.WriteLine("stderr: " + Trim(result.StandardError));
        return result;
    }

    public static async Task<ProcessResult> RunCheckedAsync(ITestOutputHelper output, string fileName, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var result = await RunAsync(output, fileName, arguments, timeout);
        Assert.True(result.ExitCode == 0, $"{fileName} {string.Join(' ', arguments)} exited {result.ExitCode}: {result.StandardError}");
        return result;
    }

    private static string Trim(string text) => text.Length <= 4000 ? text.TrimEnd() : text[..4000] + "…";
}
