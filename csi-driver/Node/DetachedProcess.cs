using System.Diagnostics;
using System.Globalization;
using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Starts helper processes (volume hosts, nbdfuse) that must outlive the node plugin:
/// output goes to a log file, not a pipe to us, and they are found again by pid.
/// </summary>
public static class DetachedProcess
{
    public static int Start(string fileName, IReadOnlyList<string> args, string logFile)
    {
        using var process = StartTracked(fileName, args, logFile);
        return process.Id;
    }

    /// <summary>
    /// Like <see cref="Start"/>, but hands back the <see cref="Process"/> (the caller disposes it), so a
    /// parent that lives on sees the exit code. The child does not die with its parent.
    /// </summary>
    public static Process StartTracked(string fileName, IReadOnlyList<string> args, string logFile)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("log=$1; shift; exec \"$@\" >>\"$log\" 2>&1 </dev/null");
        psi.ArgumentList.Add("sh");
        psi.ArgumentList.Add(logFile);
        psi.ArgumentList.Add(fileName);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi) ?? throw CsiErrors.Internal($"cannot start {fileName}");
    }

    /// <summary>True when <paramref name="pid"/> runs and its command line contains <paramref name="marker"/>.</summary>
    public static bool IsAlive(int pid, string marker)
    {
        if (pid <= 0)
        {
            return false;
        }
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // state is the field after the ")" that closes the command name; Z = zombie.
            var state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
            if (state == "Z")
            {
                return false;
            }
            var cmdline = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline").Replace('\0', ' ');
            // cmdline reads empty while the process is inside execve (our sh wrapper execs the helper):
            // that is the process starting, not a reused pid.
            return cmdline.Length == 0 || cmdline.Contains(marker, StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>SIGTERM, then SIGKILL after <paramref name="grace"/>; waits until the process is gone.</summary>
    public static async Task StopAsync(int pid, string marker, TimeSpan grace)
    {
        if (!IsAlive(pid, marker))
        {
            return;
        }
        Kill(pid, 15);
        var deadline = DateTime.UtcNow + grace;
        while (IsAlive(pid, marker) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        if (IsAlive(pid, marker))
        {
            Kill(pid, 9);
            while (IsAlive(pid, marker))
            {
                await Task.Delay(50);
            }
        }
    }

    private static void Kill(int pid, int signal)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            if (signal == 9)
            {
                p.Kill();
            }
            else
            {
                _ = NativeMethods.Kill(pid, signal);
            }
        }
        catch (ArgumentException)
        {
            // already gone
        }
    }
}

internal static partial class NativeMethods
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(int fd, ulong request, byte[] argument);
}
