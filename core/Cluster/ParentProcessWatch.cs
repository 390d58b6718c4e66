using System.Runtime.InteropServices;

namespace FeitianK8s.Core.Cluster;

/// <summary>
/// Lets a server started by <see cref="LocalClusterLauncher"/> stop when its launcher
/// dies, even by SIGKILL (no signal reaches the children then): the launcher sets
/// <see cref="EnvironmentVariable"/> to its pid, and the child polls getppid() for a
/// change of parent.
/// </summary>
public static partial class ParentProcessWatch
{
    public const string EnvironmentVariable = "FEITIAN_PARENT_PID";

    /// <summary>Starts watching when the variable is set; <paramref name="onParentGone"/> runs once.</summary>
    public static void StartIfRequested(Action onParentGone)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable(EnvironmentVariable), out var parent) || parent <= 0 || !OperatingSystem.IsLinux())
        {
            return;
        }
        var thread = new Thread(() =>
        {
            while (GetParentPid() == parent)
            {
                Thread.Sleep(500);
            }
            onParentGone();
        })
        { IsBackground = true, Name = "parent-watch" };
        thread.Start();
    }

    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int GetParentPid();
}
