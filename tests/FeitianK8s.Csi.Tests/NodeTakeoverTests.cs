using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;
using Grpc.Core;
using MasterApi = FeitianK8s.Proto.Master;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Failover on node loss with real processes: a node plugin PROCESS (node "node-old", short node
/// lease) holds a volume; it and its volume host are frozen with SIGSTOP; once its node lease has
/// expired, ControllerPublishVolume to node-a (the fixture's driver) takes the volume over (a new
/// epoch) and node-a writes. The frozen node is resumed: every write it attempts is refused, its
/// engine exits, and its plugin cleans the stale staging up at start-up. Real cluster, real nbdfuse
/// and loop devices.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class NodeTakeoverTests : IDisposable
{
    private const string OldNode = "node-old";
    /// <summary>Short for the suite; FEITIAN_TAKEOVER_LEASE_SECONDS=15 measures the default.</summary>
    private static readonly int TestLeaseSeconds =
        int.TryParse(Environment.GetEnvironmentVariable("FEITIAN_TAKEOVER_LEASE_SECONDS"), out var seconds) && seconds is >= 1 and <= 60 ? seconds : 3;
    private const int SigStop = 19;
    private const int SigCont = 18;
    private const int SigTerm = 15;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly CsiFixture _f;
    private readonly List<Process> _processes = [];
    private readonly List<int> _frozen = [];

    public NodeTakeoverTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose()
    {
        foreach (var pid in _frozen)
        {
            Kill(pid, SigCont);
        }
        foreach (var p in _processes.Where(p => !p.HasExited))
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
        _f.Output.Current = null;
    }

    private void Log(string line) => _f.Output.Current?.WriteLine(line);

    [Fact]
    public async Task Frozen_holder_loses_its_volume_to_a_second_node_after_its_node_lease_expires_and_every_write_it_attempts_after_resuming_is_refused()
    {
        var stateDir = _f.Root.Combine(OldNode, "state");
        var socket = _f.Root.Combine(OldNode, "csi.sock");
        var old = StartNodePlugin(socket, stateDir);
        using var oldClient = new CsiClient(socket);
        await WaitForAsync(async () => (await _f.Master.GetNodeAsync(new MasterApi.GetNodeRequest { Id = OldNode })).Lease?.State == "live", "node-old's node lease");

        var cap = Csi.Block();
        var id = (await _f.Client.Controller.CreateVolumeAsync(Csi.Create("pvc-takeover", 64 * Csi.MiB, cap))).Volume.VolumeId;
        await _f.Client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = OldNode, VolumeCapability = cap });
        var oldStaging = _f.Root.Combine(OldNode, "kubelet", "staging");
        var oldTarget = _f.Root.Combine(OldNode, "kubelet", "target", "dev");
        await oldClient.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = oldStaging, VolumeCapability = cap });
        await oldClient.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = oldStaging, TargetPath = oldTarget, VolumeCapability = cap });
        var before = Csi.Pattern((int)Csi.MiB, seed: 1);
        Csi.WriteDevice(oldTarget, 0, before);

        // While node-old's lease is live, no other node may get the volume (never two writers).
        var refused = await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await _f.Client.Controller.ControllerPublishVolumeAsync(
            new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = cap }));
        Log($"publish to node-a while node-old is live: {refused.Status.Detail}");

        // Freeze node-old: its plugin (no more lease renewals) and the volume's engine.
        var host = VolumeHostOf(stateDir);
        var frozenAt = Stopwatch.StartNew();
        Freeze(old.Id);
        Freeze(host);
        // A write node-old attempts while frozen: it waits in its engine, which is resumed later.
        // O_DIRECT: the write returns only when the device completed it, so success means acknowledged by the engine.
        var writeWhileFrozen = Task.Run(() => DirectWrite(oldTarget, 8 * Csi.MiB, Csi.Pattern((int)Csi.MiB, seed: 3)));

        // Node-a publishes as soon as the master's leader judges node-old's lease expired.
        var attempts = 0;
        while (true)
        {
            attempts++;
            try
            {
                await _f.Client.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = cap });
                break;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition && frozenAt.Elapsed < Timeout)
            {
                await Task.Delay(200);
            }
        }
        var publishedAfter = frozenAt.Elapsed;
        var newStaging = _f.Root.Combine("node-a-takeover", "staging");
        var newTarget = _f.Root.Combine("node-a-takeover", "target", "dev");
        await _f.Client.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = newStaging, VolumeCapability = cap });
        await _f.Client.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest { VolumeId = id, StagingTargetPath = newStaging, TargetPath = newTarget, VolumeCapability = cap });
        var after = Csi.Pattern((int)Csi.MiB, seed: 2);
        Csi.WriteDevice(newTarget, 4 * Csi.MiB, after);
        var firstWrite = frozenAt.Elapsed;
        Log($"takeover: node-old frozen -> node-a's first acknowledged write in {firstWrite.TotalSeconds:F1} s " +
            $"(publish allowed after {publishedAfter.TotalSeconds:F1} s, {attempts} attempts; node lease {TestLeaseSeconds} s). " +
            $"With the default 15 s node lease: about {(firstWrite + TimeSpan.FromSeconds(15 - TestLeaseSeconds)).TotalSeconds:F1} s (measured when FEITIAN_TAKEOVER_LEASE_SECONDS=15)");
        Assert.True(firstWrite < Timeout);

        // Node-old comes back: its engine is fenced; no write it attempts is acknowledged.
        Thaw(host);
        Thaw(old.Id);
        var frozenWrite = await Record.ExceptionAsync(() => writeWhileFrozen.WaitAsync(Timeout));
        Assert.True(frozenWrite is IOException, $"the write node-old attempted while frozen was not refused: {frozenWrite?.ToString() ?? "acknowledged"}");
        var lateWrite = await Record.ExceptionAsync(() => Task.Run(() => DirectWrite(oldTarget, 12 * Csi.MiB, Csi.Pattern((int)Csi.MiB, seed: 4))).WaitAsync(Timeout));
        Assert.True(lateWrite is IOException, $"a write node-old attempted after resuming was not refused: {lateWrite?.ToString() ?? "acknowledged"}");
        // Its engine stops by itself.
        await WaitForAsync(() => Task.FromResult(!IsRunning(host)), "node-old's fenced volume host to exit");
        Assert.Contains("is fenced", await File.ReadAllTextAsync(Directory.GetFiles(Path.Combine(stateDir, "run"), "*.host.log").Single()));

        // Node-a's data: what node-old acknowledged before the freeze and what node-a wrote; nothing of node-old's refused writes.
        Assert.Equal(before, Csi.ReadDevice(newTarget, 0, (int)Csi.MiB));
        Assert.Equal(after, Csi.ReadDevice(newTarget, 4 * Csi.MiB, (int)Csi.MiB));
        Assert.Equal(new byte[Csi.MiB], Csi.ReadDevice(newTarget, 8 * Csi.MiB, (int)Csi.MiB));
        Assert.Equal(new byte[Csi.MiB], Csi.ReadDevice(newTarget, 12 * Csi.MiB, (int)Csi.MiB));
        var volume = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id });
        Assert.Equal(CsiFixture.NodeA, volume.LeaseHolder);

        // Node-old's plugin restarts: it finds the engine gone and the volume held elsewhere, and removes its stale staging.
        Kill(old.Id, SigTerm);
        await old.WaitForExitAsync().WaitAsync(Timeout);
        var restarted = StartNodePlugin(socket, stateDir);
        using var restartedClient = new CsiClient(socket);
        Assert.False(NodeCleanup.IsMounted(oldTarget));
        Assert.Empty(Directory.GetFiles(Path.Combine(stateDir, "volumes"), "*.json"));
        // The kubelet's later cleanup calls succeed, and staging again without a ControllerPublish is refused.
        await restartedClient.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = oldTarget });
        await restartedClient.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = oldStaging });
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await restartedClient.Node.NodeStageVolumeAsync(
            new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = oldStaging, VolumeCapability = cap }));
        Assert.Equal(CsiFixture.NodeA, (await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = id })).LeaseHolder);
        Assert.Equal(after, Csi.ReadDevice(newTarget, 4 * Csi.MiB, (int)Csi.MiB));

        Kill(restarted.Id, SigTerm);
        await restarted.WaitForExitAsync().WaitAsync(Timeout);
        await _f.Client.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = newTarget });
        await _f.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = newStaging });
        await _f.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
        await _f.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    /// <summary>A node plugin process (node mode) for node-old with a short node lease; returns once it serves.</summary>
    private Process StartNodePlugin(string socket, string stateDir)
    {
        var exe = ServerExecutable.Find("FeitianK8s.Csi");
        var psi = new ProcessStartInfo(exe.FileName) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in exe.PrefixArguments.Concat(["--endpoint", "unix://" + socket, "--mode", "node", "--node-id", OldNode, "--state-dir", stateDir,
            "--masters", _f.Cluster.Launcher.MasterAddress, "--master-wait", "10",
            "--node-lease-seconds", TestLeaseSeconds.ToString(CultureInfo.InvariantCulture),
            .. _f.Cluster.Launcher.TlsArgs(FeitianK8s.Core.Security.ComponentRoles.CsiNode)]))
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi)!;
        _processes.Add(process);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { Log($"[node-old] {e.Data}"); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { Log($"[node-old] {e.Data}"); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + Timeout;
        while (!IsListening(socket))
        {
            Assert.False(process.HasExited, $"node-old's plugin exited with {(process.HasExited ? process.ExitCode : 0)}");
            Assert.True(DateTime.UtcNow < deadline, "node-old's plugin did not serve");
            Thread.Sleep(100);
        }
        return process;
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

    /// <summary>The volume host (RAF engine + NBD) that node-old's plugin started.</summary>
    private static int VolumeHostOf(string stateDir) =>
        NodeCleanup.ProcessesNaming(stateDir).Single(pid => File.ReadAllText($"/proc/{pid}/cmdline").Contains("--serve-volume", StringComparison.Ordinal));

    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0] != "Z";
        }
        catch (IOException)
        {
            return false;
        }
    }

    private void Freeze(int pid)
    {
        Assert.Equal(0, Kill(pid, SigStop));
        _frozen.Add(pid);
    }

    private void Thaw(int pid)
    {
        Assert.Equal(0, Kill(pid, SigCont));
        _frozen.Remove(pid);
    }

    private static async Task WaitForAsync(Func<Task<bool>> probe, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await probe())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// Writes with O_DIRECT and then fsync: returns only once the device completed the write, and throws
    /// IOException when it failed (a buffered write's error can be lost in the page cache's async writeback).
    /// </summary>
    private static void DirectWrite(string path, long offset, byte[] data)
    {
        const int ReadWrite = 2, Direct = 0x4000;
        var fd = Open(path, ReadWrite | Direct);
        if (fd < 0)
        {
            throw new IOException($"open {path}: errno {Marshal.GetLastPInvokeError()}");
        }
        var raw = Marshal.AllocHGlobal(data.Length + 4096);
        try
        {
            // O_DIRECT wants a buffer aligned to the logical block size.
            var buffer = (nint)(((long)raw + 4095) & ~4095L);
            Marshal.Copy(data, 0, buffer, data.Length);
            var written = PWrite(fd, buffer, (nint)data.Length, offset);
            if (written != data.Length)
            {
                throw new IOException($"write of {data.Length} bytes at {offset} to {path}: {(written < 0 ? $"errno {Marshal.GetLastPInvokeError()}" : $"{written} written")}");
            }
            if (FSync(fd) != 0)
            {
                throw new IOException($"fsync of {path}: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            Marshal.FreeHGlobal(raw);
            Close(fd);
        }
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open(string path, int flags);

    [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    private static extern nint PWrite(int fd, nint buffer, nint count, long offset);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int FSync(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
