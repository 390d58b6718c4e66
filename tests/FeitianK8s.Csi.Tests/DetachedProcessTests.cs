using FeitianK8s.Csi.Node;
using FeitianK8s.Testing;

namespace FeitianK8s.Csi.Tests;

/// <summary>The liveness check the node uses for volume hosts and nbdfuse, across their exec chain.</summary>
public sealed class DetachedProcessTests
{
    [Fact]
    public async Task A_starting_process_is_alive_through_every_exec_and_dead_after_it_exits()
    {
        using var dir = new TempDirectory("feitian-detached");
        var marker = dir.Combine("marker-" + Guid.NewGuid().ToString("N"));
        // The sh wrapper execs /bin/sh, which execs another /bin/sh (the marker stays its $0):
        // each exec briefly empties /proc/PID/cmdline. The last shell runs until it is stopped,
        // so nothing here depends on how fast the machine is.
        var pid = DetachedProcess.Start("/bin/sh", ["-c", "exec /bin/sh -c 'while :; do sleep 0.1; done' \"$0\"", marker], dir.Combine("log"));
        var checks = 0;
        var until = DateTime.UtcNow.AddMilliseconds(800);
        while (DateTime.UtcNow < until)
        {
            Assert.True(DetachedProcess.IsAlive(pid, marker), $"reported dead after {checks} checks while it still runs");
            checks++;
        }

        // Once the exec chain has settled, a live pid whose command line lacks the marker (a reused
        // pid) is not taken for our process, while ours still is.
        var cmdline = $"/proc/{pid}/cmdline";
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.ReadAllText(cmdline).Contains("while", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"pid {pid} never reached its last exec");
            await Task.Delay(20);
        }
        Assert.True(DetachedProcess.IsAlive(pid, marker), "the settled process is reported dead");
        Assert.False(DetachedProcess.IsAlive(pid, "some-other-marker"), "a running process without the marker is reported as ours");

        await DetachedProcess.StopAsync(pid, marker, TimeSpan.FromSeconds(5));
        Assert.False(DetachedProcess.IsAlive(pid, marker));
    }
}
