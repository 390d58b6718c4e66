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
        // each exec briefly empties /proc/PID/cmdline.
        var pid = DetachedProcess.Start("/bin/sh", ["-c", "exec /bin/sh -c 'sleep 2; :' \"$0\"", marker], dir.Combine("log"));
        var checks = 0;
        var until = DateTime.UtcNow.AddMilliseconds(800);
        while (DateTime.UtcNow < until)
        {
            Assert.True(DetachedProcess.IsAlive(pid, marker), $"reported dead after {checks} checks while it still runs");
            checks++;
        }
        await DetachedProcess.StopAsync(pid, marker, TimeSpan.FromSeconds(5));
        Assert.False(DetachedProcess.IsAlive(pid, marker));
        Assert.False(DetachedProcess.IsAlive(pid, "some-other-marker"));
    }
}
