namespace FeitianK8s.Testing;

/// <summary>
/// Debian's real chromium, headless (installed by test.sh): loads a page, lets its scripts run
/// (fetches included) for a virtual-time budget, then prints the DOM or saves a screenshot.
/// Each call is a fresh browser with a fresh profile directory.
/// </summary>
public sealed class HeadlessChromium(ITestOutputHelper output)
{
    /// <summary>Virtual time the page's scripts get: two console refreshes (2 s each) and some.</summary>
    public TimeSpan Budget { get; init; } = TimeSpan.FromSeconds(5);

    public static string Executable =>
        new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("chromium is not installed (test.sh installs Debian's chromium package)");

    /// <summary>The page's DOM, serialized, after its scripts ran.</summary>
    public async Task<string> DumpDomAsync(string url)
    {
        var result = await RunAsync(["--dump-dom", url]);
        return result.StandardOutput;
    }

    /// <summary>Saves a PNG of the page (1280 pixels wide) at <paramref name="path"/>.</summary>
    public async Task ScreenshotAsync(string url, string path, int width = 1280, int height = 1400)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.Delete(path);
        await RunAsync([$"--screenshot={Path.GetFullPath(path)}", $"--window-size={width},{height}", "--hide-scrollbars", url]);
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"chromium wrote no screenshot at {path}");
        }
    }

    private async Task<ToolResult> RunAsync(IEnumerable<string> arguments)
    {
        using var profile = new TempDirectory("chromium-profile");
        var result = await ExternalTool.RunAsync(new QuietOutput(output), Executable,
        [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
            $"--user-data-dir={profile.Path}", $"--virtual-time-budget={(int)Budget.TotalMilliseconds}",
            .. arguments,
        ], TimeSpan.FromSeconds(90));
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"chromium exited {result.ExitCode}: {result.StandardError.Trim()}");
        }
        return result;
    }

    /// <summary>Logs the command line and exit code, not the whole DOM or chromium's chatter.</summary>
    private sealed class QuietOutput(ITestOutputHelper inner) : ITestOutputHelper
    {
        public void WriteLine(string message) => Forward(message);
        public void WriteLine(string format, params object[] args) => Forward(string.Format(format, args));

        private void Forward(string message)
        {
            if (message.StartsWith("$ ", StringComparison.Ordinal) || message.StartsWith("exit ", StringComparison.Ordinal))
            {
                inner.WriteLine(message.Length > 400 ? message[..400] + "..." : message);
            }
        }
    }
}
