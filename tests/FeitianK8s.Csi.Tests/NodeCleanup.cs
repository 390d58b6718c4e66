using System.Diagnostics;
using System.Globalization;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Removes everything a test run may leave under its temp root, even after a failure:
/// mounts (deepest first), loop devices over files below it, nbdfuse mounts, and the
/// helper processes (volume hosts, nbdfuse) whose command line names it.
/// </summary>
public static class NodeCleanup
{
    public static void Run(string root)
    {
        root = Path.GetFullPath(root).TrimEnd('/');
        foreach (var mount in MountsUnder(root).Where(m => !m.IsFuse).OrderByDescending(m => m.Path.Length))
        {
            Exec("umount", mount.Path);
            if (IsMounted(mount.Path))
            {
                Exec("umount", "-l", mount.Path);
            }
        }
        foreach (var loop in LoopsUnder(root))
        {
            Exec("losetup", "-d", loop);
        }
        foreach (var mount in MountsUnder(root).OrderByDescending(m => m.Path.Length))
        {
            Exec("fusermount3", "-u", "-z", mount.Path);
            if (IsMounted(mount.Path))
            {
                Exec("umount", "-l", mount.Path);
            }
        }
        foreach (var pid in ProcessesNaming(root))
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                p.Kill();
                p.WaitForExit(10_000);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
            }
        }
    }

    public static IReadOnlyList<int> ProcessesNaming(string root)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains(root, StringComparison.Ordinal))
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return pids;
    }

    public static bool IsMounted(string path) => MountsUnder(path).Any(m => m.Path == path);

    private static IEnumerable<(string Path, bool IsFuse)> MountsUnder(string root) =>
        File.ReadLines("/proc/self/mountinfo")
            .Select(l => (Fields: l.Split(' '), Dash: l.IndexOf(" - ", StringComparison.Ordinal), Line: l))
            .Where(x => x.Fields.Length > 4 && x.Dash > 0)
            .Select(x => (Path: x.Fields[4].Replace("\\040", " "), IsFuse: x.Line[(x.Dash + 3)..].StartsWith("fuse", StringComparison.Ordinal)))
            .Where(m => m.Path == root || m.Path.StartsWith(root + "/", StringComparison.Ordinal))
            .ToList();

    private static IEnumerable<string> LoopsUnder(string root)
    {
        var output = Exec("losetup", "--noheadings", "--output", "NAME,BACK-FILE", "--list");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries))
            .Where(p => p.Length == 2 && p[1].Trim().StartsWith(root + "/", StringComparison.Ordinal))
            .Select(p => p[0])
            .ToList();
    }

    private static string Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit(30_000);
        return output;
    }
}
