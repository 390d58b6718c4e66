using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// No server watches files. ASP.NET Core's slim builder takes the current directory as content
/// root and watches it recursively for appsettings*.json changes (inotify on Linux); run from the
/// parent of the data directory, every chunk write then woke a File Watch thread in each process
/// of the cluster. `feitian up` started there must hold no inotify watch in any of its processes:
/// `up` itself (NBD engine, /metrics, console proxy), the master and the chunk servers; and
/// `up`'s own hosts still answer.
/// </summary>
public sealed class FileWatchTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Feitian_up_run_from_the_parent_of_its_data_directory_holds_no_inotify_watch_in_any_process()
    {
        using var parent = new TempDirectory("file-watch");
        var data = parent.Combine("data");
        await using var up = await FeitianUpProcess.StartAsync(output, data, ["--chunkservers", "3"], workingDirectory: parent.Path);

        var tree = up.ProcessTree();
        // up, its master and three chunk servers at least.
        Assert.True(tree.Count >= 5, $"expected up, a master and 3 chunk servers, found pids {string.Join(' ', tree)}");
        var watching = new List<string>();
        foreach (var pid in tree)
        {
            var cwd = File.ResolveLinkTarget($"/proc/{pid}/cwd", returnFinalTarget: false)?.FullName;
            Assert.Equal(parent.Path, cwd);
            var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
            var process = $"pid {pid} {Path.GetFileName(args[0])} {string.Join(' ', args.Skip(1).Take(2))}";
            var watches = InotifyWatches(pid);
            output.WriteLine($"{process}: {watches.Count} inotify watches");
            if (watches.Count > 0)
            {
                watching.Add($"{process}: {watches.Count} inotify watches, e.g. {watches[0]}");
            }
        }
        Assert.True(watching.Count == 0, string.Join(Environment.NewLine, watching));

        // The hosts of `up` itself still serve: its /metrics and the console's token proxy.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        Assert.Contains("# TYPE", await http.GetStringAsync(up.ProcessMetricsUrl));
        using var console = await http.GetAsync(up.ConsoleUrl);
        Assert.Equal(System.Net.HttpStatusCode.OK, console.StatusCode);
    }

    /// <summary>The `inotify wd:` lines of every inotify descriptor the process holds (one per watched directory).</summary>
    private static List<string> InotifyWatches(int pid)
    {
        var watches = new List<string>();
        foreach (var fdinfo in Directory.EnumerateFiles($"/proc/{pid}/fdinfo"))
        {
            try
            {
                watches.AddRange(File.ReadLines(fdinfo).Where(l => l.StartsWith("inotify wd:", StringComparison.Ordinal)));
            }
            catch (IOException)
            {
                // The descriptor was closed while we read.
            }
        }
        return watches;
    }
}
