using System.Diagnostics;

namespace FeitianK8s.Testing;

public sealed record ToolResult(int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>Runs a real command line tool with a timeout; the whole process tree is killed on timeout.</summary>
public static class ExternalTool
{
    public static async Task<ToolResult> RunAsync(ITestOutputHelper output, string fileName, IEnumerable<string> arguments, TimeSpan timeout, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        SafeWrite(output, $"$ {fileName} {string.Join(' ', start.ArgumentList)}");
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {fileName}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new TimeoutException($"{fileName} {string.Join(' ', start.ArgumentList)} did not finish within {timeout}; stderr: {await stderr}");
        }
        var result = new ToolResult(process.ExitCode, await stdout, await stderr);
        SafeWrite(output, $"exit {result.ExitCode}");
        if (result.StandardOutput.Length > 0)
        {
            SafeWrite(output, Trim(result.StandardOutput));
        }
        if (result.StandardError.Length > 0)
        {
            SafeWrite(output, "stderr: " + Trim(result.StandardError));
        }
        return result;
    }

    /// <summary>Runs the tool and throws (failing the test) unless it exits 0.</summary>
    public static async Task<ToolResult> RunCheckedAsync(ITestOutputHelper output, string fileName, IEnumerable<string> arguments, TimeSpan timeout, string? workingDirectory = null)
    {
        var result = await RunAsync(output, fileName, arguments, timeout, workingDirectory);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"{fileName} {string.Join(' ', arguments)} exited {result.ExitCode}: {result.StandardError.Trim()} {result.StandardOutput.Trim()}");
        }
        return result;
    }

    /// <summary>The full path of a tool on PATH, or null.</summary>
    public static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin"])
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    internal static void SafeWrite(ITestOutputHelper output, string line)
    {
        try
        {
            output.WriteLine(line);
        }
        catch (InvalidOperationException)
        {
            // The test is over; a child may still print while it stops.
        }
    }

    private static string Trim(string text) => text.Length <= 4000 ? text.TrimEnd() : text[..4000] + "…";
}
