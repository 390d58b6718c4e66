using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Csi.Node;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Proto.VolumeHost;
using FeitianK8s.Testing;
using AgentClient = FeitianK8s.Proto.VolumeHost.VolumeHostAgent.VolumeHostAgentClient;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Volumes outlive the node plugin: a volume-host agent PROCESS runs the volume hosts and nbdfuse,
/// a node plugin PROCESS (--volume-host-agent) stages through it. Killing the plugin's whole process
/// tree under ext4 write load fails no write; killing the agent leaves its helpers running and the
/// next agent finds them. Real cluster, real processes, nbdfuse, loop devices and ext4.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class VolumeHostAgentTests : IDisposable
{
    private const string Node = "node-vh";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly CsiFixture _f;
    private readonly List<Process> _processes = [];
    private readonly string _dir;

    public VolumeHostAgentTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
        _dir = _f.Root.Combine(Node + "-" + Guid.NewGuid().ToString("N")[..6]);
    }

    private string AgentSocket => Path.Combine(_dir, "agent", "agent.sock");
    private string PluginSocket => Path.Combine(_dir, "csi.sock");
    private string StateDir => Path.Combine(_dir, "state");

    public void Dispose()
    {
        foreach (var p in _processes.Where(p => !p.HasExited))
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
        NodeCleanup.Run(_dir);
        _f.Output.Current = null;
    }

    private void Log(string line) => _f.Output.Current?.WriteLine(line);

    [Fact]
    public async Task Node_plugin_process_tree_killed_under_ext4_write_load_and_restarted_fails_no_write_and_fsck_is_clean()
    {
        StartAgent();
        var plugin = StartPlugin();
        using var client = new CsiClient(PluginSocket);
        var cap = Csi.Mount();
        var id = (await _f.Client.Controller.CreateVolumeAsync(Csi.Create("pvc-outlive", 64 * Csi.MiB, cap))).Volume.VolumeId;
        await _f.Client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = Node, VolumeCapability = cap });
        var staging = Path.Combine(_dir, "kubelet", "staging");
        var target = Path.Combine(_dir, "kubelet", "target");
        await client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        await client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = cap });
        var (stagingMount, targetMount) = (MountId(staging), MountId(target));
        var helpers = await ListHelpersAsync();
        Assert.Equal(2, helpers.Count(h => h.State == "running"));

        using var writer = new FsyncWriter(target);
        await writer.WaitForWritesAsync(10, Timeout);
        // Everything the plugin runs dies; the agent's helpers are not in its tree.
        var tree = ProcessTree(plugin.Id);
        Assert.DoesNotContain(tree, pid => helpers.Any(h => h.Pid == pid));
        var atKill = writer.Done;
        var down = Stopwatch.StartNew();
        foreach (var pid in tree)
        {
            Kill(pid, 9);
        }
        await plugin.WaitForExitAsync().WaitAsync(Timeout);
        var restarted = StartPlugin();
        var atServe = writer.Done;
        var serveAfter = down.Elapsed;
        await client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        await client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = cap });
        Assert.Equal(stagingMount, MountId(staging));
        Assert.Equal(targetMount, MountId(target));
        Assert.Equal(helpers.Select(h => h.Pid).Order(), (await ListHelpersAsync()).Select(h => h.Pid).Order());
        await writer.WaitForWritesAsync(writer.Done + 10, Timeout);
        var stats = await client.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.False(stats.VolumeCondition.Abnormal, stats.VolumeCondition.Message);
        await writer.StopAsync();
        Log($"killed the plugin's tree ({tree.Count} processes); it served again after {serveAfter.TotalSeconds:F1} s; " +
            $"{atServe - atKill} fsynced writes of {FsyncWriter.FileBytes / 1024} KiB completed meanwhile, {writer.Done} in all, {writer.Failures.Count} failed");
        Assert.Empty(writer.Failures);
        Assert.True(atServe > atKill, "no write completed while the plugin was down");
        writer.Verify();

        // fsck the unmounted filesystem on the still attached loop device, then clean up.
        var loop = LoopDeviceOf(id);
        await client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        Assert.Equal(0, Run("umount", staging).Code);
        var fsck = Run("fsck.ext4", "-fn", loop);
        Log($"fsck.ext4 -fn {loop}: exit {fsck.Code}\n{fsck.Output}");
        Assert.Equal(0, fsck.Code);
        await client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        Assert.Empty(await ListHelpersAsync());
        await _f.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = Node });
        await _f.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        Kill(restarted.Id, 15);
    }

    [Fact]
    public async Task Agent_killed_leaves_its_volume_hosts_running_and_the_next_agent_finds_and_stops_them()
    {
        var agent = StartAgent();
        StartPlugin();
        using var client = new CsiClient(PluginSocket);
        var cap = Csi.Block();
        var id = (await _f.Client.Controller.CreateVolumeAsync(Csi.Create("pvc-agent-restart", 32 * Csi.MiB, cap))).Volume.VolumeId;
        await _f.Client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = Node, VolumeCapability = cap });
        var staging = Path.Combine(_dir, "kubelet", "staging");
        var target = Path.Combine(_dir, "kubelet", "target", "dev");
        await client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        await client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = staging, TargetPath = target, VolumeCapability = cap });
        var before = Csi.Pattern((int)Csi.MiB, seed: 21);
        Csi.WriteDevice(target, 0, before);
        var helpers = await ListHelpersAsync();

        Kill(agent.Id, 9);
        await agent.WaitForExitAsync().WaitAsync(Timeout);
        Assert.All(helpers, h => Assert.True(DetachedProcess.IsAlive(h.Pid, h.Kind == "nbdfuse" ? h.FuseDir : h.SocketPath), $"{h.Kind} died with the agent"));
        var after = Csi.Pattern((int)Csi.MiB, seed: 22);
        Csi.WriteDevice(target, 4 * Csi.MiB, after);

        StartAgent();
        var found = await ListHelpersAsync();
        Assert.Equal(helpers.Select(h => (h.Kind, h.Pid)).Order(), found.Select(h => (h.Kind, h.Pid)).Order());
        Assert.All(found, h => Assert.Equal("running", h.State));
        var stats = await client.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = target });
        Assert.False(stats.VolumeCondition.Abnormal, stats.VolumeCondition.Message);
        Assert.Equal(before, Csi.ReadDevice(target, 0, (int)Csi.MiB));
        Assert.Equal(after, Csi.ReadDevice(target, 4 * Csi.MiB, (int)Csi.MiB));

        // The new agent stops helpers it adopted.
        await client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
        await client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
        Assert.Empty(await ListHelpersAsync());
        Assert.All(helpers, h => Assert.False(DetachedProcess.IsAlive(h.Pid, h.Kind == "nbdfuse" ? h.FuseDir : h.SocketPath)));
        await _f.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = Node });
        await _f.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    private Process StartAgent()
    {
        var process = Start("agent", ["--mode", "volume-host", "--agent-socket", AgentSocket, "--node-id", Node,
            "--masters", _f.Cluster.Launcher.MasterAddress, "--master-wait", "10",
            .. _f.Cluster.Launcher.TlsArgs(Core.Security.ComponentRoles.CsiNode)], AgentSocket);
        return process;
    }

    private Process StartPlugin() =>
        Start("plugin", ["--endpoint", "unix://" + PluginSocket, "--mode", "node", "--node-id", Node, "--state-dir", StateDir,
            "--masters", _f.Cluster.Launcher.MasterAddress, "--master-wait", "10", "--volume-host-agent", AgentSocket,
            .. _f.Cluster.Launcher.TlsArgs(Core.Security.ComponentRoles.CsiNode)], PluginSocket);

    /// <summary>A FeitianK8s.Csi process; returns once it serves on <paramref name="socket"/>.</summary>
    private Process Start(string name, IReadOnlyList<string> args, string socket)
    {
        var exe = ServerExecutable.Find("FeitianK8s.Csi");
        var psi = new ProcessStartInfo(exe.FileName) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in exe.PrefixArguments.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi)!;
        _processes.Add(process);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { Log($"[{name}] {e.Data}"); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { Log($"[{name}] {e.Data}"); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + Timeout;
        while (!IsListening(socket))
        {
            Assert.False(process.HasExited, $"{name} exited with {(process.HasExited ? process.ExitCode : 0)}");
            Assert.True(DateTime.UtcNow < deadline, $"{name} did not serve on {socket}");
            Thread.Sleep(50);
        }
        return process;
    }

    private async Task<IReadOnlyList<HelperStatus>> ListHelpersAsync()
    {
        using var channel = AgentVolumeHostLauncher.CreateChannel(AgentSocket);
        return (await new AgentClient(channel).ListHelpersAsync(new ListHelpersRequest())).Helpers;
    }

    private string LoopDeviceOf(string volumeId)
    {
        var file = Directory.GetFiles(Path.Combine(StateDir, "volumes"), "*.json").Single();
        using var doc = JsonDocument.Parse(File.ReadAllText(file));
        Assert.Equal(volumeId, doc.RootElement.GetProperty("VolumeId").GetString());
        return doc.RootElement.GetProperty("LoopDevice").GetString()!;
    }

    /// <summary>The process and all its descendants, parents first.</summary>
    private static List<int> ProcessTree(int root)
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var ppid = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1], CultureInfo.InvariantCulture);
                (children.TryGetValue(ppid, out var list) ? list : children[ppid] = []).Add(pid);
            }
            catch (IOException)
            {
            }
        }
        var tree = new List<int> { root };
        for (var i = 0; i < tree.Count; i++)
        {
            tree.AddRange(children.GetValueOrDefault(tree[i]) ?? []);
        }
        return tree;
    }

    private static bool IsListening(string socket)
    {
        if (!File.Exists(socket))
        {
            return false;
        }
        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        try
        {
            probe.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private static string MountId(string path) =>
        File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')).Last(f => f[4] == path)[0];

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}

/// <summary>
/// Writes files of known content in a loop on its own thread, each made durable with fsync before
/// the next; a failed write or fsync is recorded, never retried silently. Cycles over a fixed set
/// of names so the volume never fills.
/// </summary>
public sealed class FsyncWriter : IDisposable
{
    public const int FileBytes = 256 * 1024;
    private const int Names = 48;
    private readonly string _dir;
    private readonly Dictionary<string, int> _seeds = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private int _done;

    public FsyncWriter(string dir)
    {
        _dir = dir;
        _thread = new Thread(Loop) { IsBackground = true, Name = "fsync-writer" };
        _thread.Start();
    }

    public int Done => Volatile.Read(ref _done);
    public List<string> Failures { get; } = [];

    private void Loop()
    {
        for (var i = 0; !_stop.IsCancellationRequested; i++)
        {
            var name = $"w-{i % Names:D3}.bin";
            try
            {
                using (var stream = new FileStream(Path.Combine(_dir, name), FileMode.Create, FileAccess.Write))
                {
                    stream.Write(Csi.Pattern(FileBytes, i));
                    stream.Flush(flushToDisk: true);
                }
                lock (_seeds)
                {
                    _seeds[name] = i;
                }
                Interlocked.Increment(ref _done);
            }
            catch (Exception e)
            {
                lock (Failures)
                {
                    Failures.Add($"write {i} ({name}): {e.Message}");
                }
            }
        }
    }

    public async Task WaitForWritesAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Done < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {Done} of {count} writes within {timeout} ({Failures.Count} failed)");
            await Task.Delay(20);
        }
    }

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.Run(() => _thread.Join());
    }

    /// <summary>Every file holds what its last successful write put there.</summary>
    public void Verify()
    {
        foreach (var (name, seed) in _seeds)
        {
            Assert.True(Csi.Pattern(FileBytes, seed).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(_dir, name))), $"{name} does not hold write {seed}");
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }
}
