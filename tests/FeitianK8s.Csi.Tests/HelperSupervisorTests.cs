using FeitianK8s.Csi.Agent;
using FeitianK8s.Csi.Node;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Csi.Tests;

/// <summary>The volume-host agent's core with real processes (no cluster): bad requests, exit codes, records across a restart.</summary>
public sealed class HelperSupervisorTests
{
    private static readonly VolumeHostConfig Config = new(["http://127.0.0.1:1"], "node-x", TimeSpan.FromSeconds(1), null);

    [Fact]
    public async Task A_bad_request_changes_nothing_and_a_helper_that_exits_is_reported_with_its_exit_code_also_by_the_next_agent()
    {
        using var dir = new TempDirectory("feitian-agent");
        var supervisor = new HelperSupervisor(dir.Combine("state"), Config, NullLogger<HelperSupervisor>.Instance);
        var relative = new HelperSpec("vol-1", HelperKind.NbdFuse, "run/v.sock", dir.Combine("v.fuse"), false, dir.Combine("v.fuse.log"));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => supervisor.StartAsync(relative, CancellationToken.None));
        Assert.Contains("socket_path", e.Message, StringComparison.Ordinal);
        Assert.Empty(await supervisor.ListAsync(CancellationToken.None));

        // nbdfuse on a socket nobody serves, into a directory that does not exist: it exits at once, with an error.
        var spec = new HelperSpec("vol-1", HelperKind.NbdFuse, dir.Combine("missing.sock"), dir.Combine("no-such-dir"), false, dir.Combine("v.fuse.log"));
        var started = await supervisor.StartAsync(spec, CancellationToken.None);
        Assert.True(started.Pid > 0);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        HelperReport? report;
        while ((report = await supervisor.GetAsync("vol-1", HelperKind.NbdFuse, CancellationToken.None))!.State == HelperRunState.Running)
        {
            Assert.True(DateTime.UtcNow < deadline, "nbdfuse did not exit");
            await Task.Delay(50);
        }
        Assert.Equal(HelperRunState.Exited, report.State);
        Assert.NotEqual(0, report.ExitCode);
        Assert.False(report.Fenced);

        // A new agent on the same state dir knows what the old one saw; stopping forgets the helper.
        var next = new HelperSupervisor(dir.Combine("state"), Config, NullLogger<HelperSupervisor>.Instance);
        Assert.Equal(report, await next.GetAsync("vol-1", HelperKind.NbdFuse, CancellationToken.None));
        Assert.NotNull(await next.StopAsync("vol-1", HelperKind.NbdFuse, TimeSpan.FromSeconds(1), CancellationToken.None));
        Assert.Null(await next.GetAsync("vol-1", HelperKind.NbdFuse, CancellationToken.None));
        Assert.Null(await next.StopAsync("vol-1", HelperKind.NbdFuse, TimeSpan.FromSeconds(1), CancellationToken.None));
    }

    [Fact]
    public void Agent_and_node_plugin_options_parse_the_agent_socket_and_refuse_a_relative_one()
    {
        var options = VolumeHostAgentOptions.Parse(["--mode", "volume-host", "--agent-socket", "/run/vh/agent.sock", "--node-id", "n1", "--masters", "m:7000"]);
        Assert.Equal(("/run/vh/agent.sock", "/run/vh", "n1"), (options.SocketPath, options.StateDir, options.VolumeHosts.NodeId));
        Assert.True(VolumeHostAgentOptions.IsAgentMode(["--mode=volume-host"]));
        Assert.False(VolumeHostAgentOptions.IsAgentMode(["--mode", "node"]));
        Assert.Throws<ArgumentException>(() => VolumeHostAgentOptions.Parse(["--mode", "volume-host", "--agent-socket", "agent.sock", "--node-id", "n1", "--masters", "m:7000"]));
        Assert.Throws<ArgumentException>(() => VolumeHostAgentOptions.Parse(["--mode", "volume-host", "--agent-socket", "/a.sock", "--masters", "m:7000"]));

        string[] node = ["--endpoint", "unix:///csi/csi.sock", "--mode", "node", "--node-id", "n1", "--masters", "m:7000"];
        Assert.Null(CsiDriverOptions.Parse(node, _ => null).VolumeHostAgentSocket);
        Assert.Equal("/run/vh/agent.sock", CsiDriverOptions.Parse([.. node, "--volume-host-agent", "/run/vh/agent.sock"], _ => null).VolumeHostAgentSocket);
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse([.. node, "--volume-host-agent", "agent.sock"], _ => null));
    }
}
