namespace FeitianK8s.Csi.Node;

/// <summary>A helper as its launcher sees it: the pid (in the launcher's pid namespace) and whether it runs.</summary>
public sealed record HelperState(int Pid, bool Running, int? ExitCode = null)
{
    /// <summary>A volume host that exited because a newer lease holder fenced its engine.</summary>
    public bool Fenced => ExitCode == VolumeHost.FencedExitCode;
}

/// <summary>
/// Runs the data-path helpers of staged volumes (volume hosts, nbdfuse) for the node plugin.
/// <see cref="LocalVolumeHostLauncher"/> starts them as detached processes of the plugin itself
/// (<c>feitian up</c>, tests); <see cref="AgentVolumeHostLauncher"/> asks the node's volume-host
/// agent, in whose container they then live (Kubernetes). A launcher that cannot tell whether a
/// helper runs throws (Unavailable) rather than answer "not running": the node plugin would
/// otherwise tear down a working data path.
/// </summary>
public interface IVolumeHostLauncher
{
    /// <summary>Starts the helper; returns its pid (to be recorded in <paramref name="record"/>).</summary>
    Task<int> StartAsync(HelperSpec spec, CancellationToken ct);

    Task<HelperState> GetAsync(StagedVolume record, HelperKind kind, CancellationToken ct);

    /// <summary>SIGTERM, SIGKILL after <paramref name="grace"/>; returns once it is gone. Stopping what does not run succeeds.</summary>
    Task StopAsync(StagedVolume record, HelperKind kind, TimeSpan grace, CancellationToken ct);
}

public static class VolumeHostLauncherExtensions
{
    public static async Task<bool> IsRunningAsync(this IVolumeHostLauncher launcher, StagedVolume record, HelperKind kind, CancellationToken ct) =>
        (await launcher.GetAsync(record, kind, ct)).Running;

    /// <summary>The helper spec a staged volume's record implies.</summary>
    public static HelperSpec Spec(this StagedVolume record, HelperKind kind) =>
        new(record.VolumeId, kind, record.SocketPath, record.FuseDir, record.ReadOnly,
            Path.ChangeExtension(record.SocketPath, kind == HelperKind.VolumeHost ? ".host.log" : ".fuse.log"));
}

/// <summary>Today's behaviour without an agent: helpers are detached children of the node plugin, found again by pid.</summary>
public sealed class LocalVolumeHostLauncher(CsiDriverOptions options) : IVolumeHostLauncher
{
    private readonly VolumeHostConfig _config = new(options.Masters, options.NodeId, options.MasterUnavailableRetry, options.Tls?.Files);

    public Task<int> StartAsync(HelperSpec spec, CancellationToken ct)
    {
        var (file, args) = HelperCommand.For(spec, _config);
        return Task.FromResult(DetachedProcess.Start(file, args, spec.LogFile));
    }

    public Task<HelperState> GetAsync(StagedVolume record, HelperKind kind, CancellationToken ct)
    {
        var pid = PidOf(record, kind);
        return Task.FromResult(new HelperState(pid, DetachedProcess.IsAlive(pid, record.Spec(kind).Marker)));
    }

    public Task StopAsync(StagedVolume record, HelperKind kind, TimeSpan grace, CancellationToken ct) =>
        DetachedProcess.StopAsync(PidOf(record, kind), record.Spec(kind).Marker, grace);

    private static int PidOf(StagedVolume record, HelperKind kind) => kind == HelperKind.VolumeHost ? record.HostPid : record.FusePid;
}
