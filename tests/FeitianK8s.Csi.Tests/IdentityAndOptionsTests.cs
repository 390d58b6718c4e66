using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Testing;
using FeitianK8s.Proto.Csi;

namespace FeitianK8s.Csi.Tests;

[Collection(CsiCollection.Name)]
public sealed class IdentityAndOptionsTests : IDisposable
{
    private readonly CsiFixture _f;

    public IdentityAndOptionsTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    [Fact]
    public async Task Identity_reports_name_version_capabilities_and_readiness()
    {
        var info = await _f.Client.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
        Assert.Equal("feitian.csi.k8s.io", info.Name);
        Assert.Matches(@"^\d+\.\d+\.\d+$", info.VendorVersion);
        var caps = await _f.Client.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
        Assert.Contains(caps.Capabilities, c => c.Service?.Type == PluginCapability.Types.Service.Types.Type.ControllerService);
        // No topology at all: without VOLUME_ACCESSIBILITY_CONSTRAINTS the provisioner builds no requirements and PVs get no node affinity.
        Assert.DoesNotContain(caps.Capabilities, c => c.Service?.Type == PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints);
        Assert.Contains(caps.Capabilities, c => c.VolumeExpansion?.Type == PluginCapability.Types.VolumeExpansion.Types.Type.Online);
        Assert.True((await _f.Client.Identity.ProbeAsync(new ProbeRequest())).Ready);

        var controller = await _f.Client.Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest());
        var rpcs = controller.Capabilities.Select(c => c.Rpc.Type).ToHashSet();
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteVolume, rpcs);
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.PublishUnpublishVolume, rpcs);
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.ExpandVolume, rpcs);
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteSnapshot, rpcs);
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.ListSnapshots, rpcs);
        Assert.Contains(ControllerServiceCapability.Types.RPC.Types.Type.CloneVolume, rpcs);

        var node = await _f.Client.Node.NodeGetCapabilitiesAsync(new NodeGetCapabilitiesRequest());
        Assert.Equal(4, node.Capabilities.Count);
        var nodeInfo = await _f.Client.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.Equal(CsiFixture.NodeA, nodeInfo.NodeId);
        Assert.True(nodeInfo.MaxVolumesPerNode > 0);
        Assert.Null(nodeInfo.AccessibleTopology);
    }

    [Fact]
    public async Task GetCapacity_is_free_space_divided_by_replicas()
    {
        var three = await _f.Client.Controller.GetCapacityAsync(new GetCapacityRequest { VolumeCapabilities = { Csi.Mount() } });
        var one = await _f.Client.Controller.GetCapacityAsync(new GetCapacityRequest { VolumeCapabilities = { Csi.Mount() }, Parameters = { ["replicas"] = "1" } });
        Assert.True(three.AvailableCapacity > 0);
        // Free space moves a little between the calls (other tests' data), so compare loosely.
        Assert.InRange((double)one.AvailableCapacity / three.AvailableCapacity, 2.9, 3.1);
        var unsupported = await _f.Client.Controller.GetCapacityAsync(new GetCapacityRequest
        {
            VolumeCapabilities = { Csi.Mount(VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter) },
        });
        Assert.Equal(0, unsupported.AvailableCapacity);
    }

    /// <summary>
    /// The "master outage does not fail liveness" proof: livenessprobe answers kubelet's probe with
    /// the driver's Probe, so a node plugin whose master refuses connections must stay ready (a
    /// restart would stop the volume engines it hosts). The controller too: its calls answer
    /// UNAVAILABLE instead, and a restart would not bring a master back.
    /// </summary>
    [Theory]
    [InlineData(CsiMode.Node)]
    [InlineData(CsiMode.Controller)]
    public async Task Probe_stays_ready_while_no_master_answers(CsiMode mode)
    {
        var deadPort = RefusingPort();
        var master = $"http://127.0.0.1:{deadPort}";
        // The fault took effect: nothing accepts on that port.
        using (var probeSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            var refused = Assert.Throws<SocketException>(() => probeSocket.Connect(IPAddress.Loopback, deadPort));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        var name = $"probe-{mode.ToString().ToLowerInvariant()}";
        await using var driver = await _f.StartDriverAsync(name, _f.Root.Combine(name, "state"), masters: [master], mode: mode, masterRetry: TimeSpan.FromSeconds(1));
        // Several probes across more than one livenessprobe period of a kubelet (its 3 s timeout each).
        for (var i = 0; i < 3; i++)
        {
            var started = Stopwatch.StartNew();
            var probe = await driver.Client.Identity.ProbeAsync(new ProbeRequest(), deadline: DateTime.UtcNow.AddSeconds(3));
            Assert.True(probe.Ready, $"probe {i} not ready while the master at {master} refuses connections");
            _f.Output.Current?.WriteLine($"probe {i}: ready in {started.ElapsedMilliseconds} ms");
            await Task.Delay(500);
        }
        if (mode == CsiMode.Controller)
        {
            // The master really is unreachable for the driver: a call that needs it fails.
            var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await driver.Client.Controller.ListVolumesAsync(new ListVolumesRequest()));
            Assert.Equal(Grpc.Core.StatusCode.Unavailable, e.StatusCode);
        }
    }

    [Fact]
    public async Task Node_plugin_probe_is_not_ready_when_its_state_dir_is_unusable()
    {
        var name = "probe-bad-state";
        var stateDir = _f.Root.Combine(name, "state");
        await using var driver = await _f.StartDriverAsync(name, stateDir, mode: CsiMode.Node);
        Assert.True((await driver.Client.Identity.ProbeAsync(new ProbeRequest())).Ready);
        // A file where the state dir should be: nothing can be written under it.
        Directory.Delete(stateDir, recursive: true);
        File.WriteAllText(stateDir, "not a directory");
        try
        {
            Assert.False((await driver.Client.Identity.ProbeAsync(new ProbeRequest())).Ready);
        }
        finally
        {
            File.Delete(stateDir);
        }
    }

    private static int RefusingPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [Fact]
    public void Node_lease_seconds_default_to_15_and_bad_values_are_refused()
    {
        string[] base_ = ["--endpoint", "unix:///a", "--node-id", "n", "--masters", "m:1"];
        Assert.Equal(15, CsiDriverOptions.Parse(base_).NodeLeaseSeconds);
        Assert.Equal(0, CsiDriverOptions.Parse([.. base_, "--node-lease-seconds", "0"]).NodeLeaseSeconds);
        Assert.Equal(5, CsiDriverOptions.Parse([.. base_, "--node-lease-seconds=5"]).NodeLeaseSeconds);
        foreach (var bad in new[] { "-1", "3601", "x", "" })
        {
            Assert.Contains("--node-lease-seconds", Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse([.. base_, "--node-lease-seconds", bad])).Message);
        }
    }

    [Fact]
    public void Command_line_is_parsed_and_bad_values_are_refused()
    {
        var options = CsiDriverOptions.Parse(["--endpoint", "unix:///run/csi/csi.sock", "--mode", "node", "--node-id", "n1",
            "--masters", "10.0.0.1:7000,http://10.0.0.2:7000", "--rack", "r1", "--state-dir", "/var/lib/x"]);
        Assert.Equal("/run/csi/csi.sock", options.SocketPath);
        Assert.Equal(CsiMode.Node, options.Mode);
        Assert.Equal(["http://10.0.0.1:7000", "http://10.0.0.2:7000"], options.Masters);
        Assert.Equal("r1", options.Rack);
        Assert.Equal("/var/lib/x", options.StateDir);
        Assert.Equal("/tmp/a.sock", CsiDriverOptions.Parse(["--endpoint=unix:/tmp/a.sock", "--mode=controller", "--masters=m:1"]).SocketPath);
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "tcp://x:1", "--node-id", "n", "--masters", "m:1"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "unix:///a", "--mode", "both", "--node-id", "n", "--masters", "m:1"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "unix:///a", "--mode", "node", "--masters", "m:1"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "unix:///a", "--node-id", "n", "--masters", "nohostport"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "unix:///a", "--node-id", "n"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint", "unix:///a", "--node-id", "n", "--masters", "m:1", "--colour", "x"]));
        Assert.Throws<ArgumentException>(() => CsiDriverOptions.Parse(["--endpoint"]));
    }

    [Fact]
    public async Task The_driver_process_serves_and_stops_cleanly_on_SIGTERM()
    {
        var exe = ServerExecutable.Find("FeitianK8s.Csi");
        var socket = _f.Root.Combine("proc", "csi.sock");
        var bad = await RunAsync(exe, ["--endpoint", socket, "--mode", "sideways"]);
        Assert.Equal(2, bad.ExitCode);

        var psi = new ProcessStartInfo(exe.FileName) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in exe.PrefixArguments.Concat(["--endpoint", "unix://" + socket, "--mode", "controller", "--state-dir", _f.Root.Combine("proc", "state"), "--masters",
            _f.Cluster.Launcher.MasterAddress, .. _f.Cluster.Launcher.TlsArgs(FeitianK8s.Core.Security.ComponentRoles.CsiController)]))
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(socket))
            {
                if (process.HasExited)
                {
                    Assert.Fail($"driver exited with {process.ExitCode}: {await stderr}");
                }
                Assert.True(DateTime.UtcNow < deadline, "driver did not create its socket");
                await Task.Delay(100);
            }
            using (var client = new CsiClient(socket))
            {
                Assert.Equal(CsiDriverOptions.DriverName, (await client.Identity.GetPluginInfoAsync(new GetPluginInfoRequest())).Name);
                Assert.True((await client.Identity.ProbeAsync(new ProbeRequest())).Ready);
            }
            Assert.Equal(0, Kill(process.Id, 15));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            _f.Output.Current?.WriteLine(await stdout);
            Assert.Equal(0, process.ExitCode);
            Assert.False(File.Exists(socket));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }

    private static async Task<Process> RunAsync(ServerExecutable exe, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(exe.FileName) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in exe.PrefixArguments.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi)!;
        await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return p;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
