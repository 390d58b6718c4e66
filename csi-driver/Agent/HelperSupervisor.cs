using System.Diagnostics;
using System.Text.Json;
using FeitianK8s.Csi.Node;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Agent;

/// <summary>What the agent persists about one helper it started (one JSON file per helper).</summary>
public sealed record HelperRecord
{
    public required HelperSpec Spec { get; init; }
    public required int Pid { get; init; }
    /// <summary>Set once the agent saw the helper exit (it reaps its own children); null while it runs or when the exit was not seen.</summary>
    public int? ExitCode { get; init; }
}

public enum HelperRunState { Running, Exited, Gone }

/// <summary>A helper's state now: <see cref="HelperRunState.Gone"/> = not running and the exit was not seen (it ended while the agent was down).</summary>
public sealed record HelperReport(HelperSpec Spec, int Pid, HelperRunState State, int? ExitCode)
{
    public bool Fenced => Spec.Kind == HelperKind.VolumeHost && ExitCode == Node.VolumeHost.FencedExitCode;
}

/// <summary>Thrown for a start that conflicts with a running helper of the same name.</summary>
public sealed class HelperConflictException(string message) : Exception(message);

/// <summary>
/// The volume-host agent's core: starts helpers as its own children, persists each one under the
/// state dir before answering, and after its own restart finds the running ones again by pid and
/// command-line marker (as the node plugin did without an agent). It never restarts a helper by
/// itself: whether a dead volume host may come back (its lease may have moved) is the node plugin's
/// decision. Helpers are started detached, so they survive the agent's process; in Kubernetes they
/// die with its container, which is why that DaemonSet is updated only OnDelete.
/// </summary>
public sealed class HelperSupervisor
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
    private readonly string _dir;
    private readonly VolumeHostConfig _config;
    private readonly ILogger<HelperSupervisor> _logger;
    private readonly SemaphoreSlim _lock = new(1, 1);
    /// <summary>Children started by this process: the only ones whose exit code can be learnt.</summary>
    private readonly Dictionary<string, Process> _children = new(StringComparer.Ordinal);

    public HelperSupervisor(string stateDir, VolumeHostConfig config, ILogger<HelperSupervisor> logger)
    {
        _dir = Path.Combine(stateDir, "helpers");
        Directory.CreateDirectory(_dir);
        _config = config;
        _logger = logger;
        foreach (var report in List())
        {
            _logger.LogInformation("Found helper {Kind} of volume {Volume}: pid {Pid} {State}", report.Spec.Kind.Name(), report.Spec.VolumeId, report.Pid, report.State);
        }
    }

    public async Task<HelperReport> StartAsync(HelperSpec spec, CancellationToken ct)
    {
        if (spec.Problem() is { } problem)
        {
            throw new ArgumentException(problem);
        }
        await _lock.WaitAsync(ct);
        try
        {
            if (Load(spec.VolumeId, spec.Kind) is { } existing && Report(existing) is { State: HelperRunState.Running } running)
            {
                if (existing.Spec != spec)
                {
                    throw new HelperConflictException(
                        $"{spec.Kind.Name()} of volume '{spec.VolumeId}' already runs (pid {existing.Pid}) with different arguments ({existing.Spec})");
                }
                return running;
            }
            var (file, args) = HelperCommand.For(spec, _config);
            var process = DetachedProcess.StartTracked(file, args, spec.LogFile);
            var key = Key(spec.VolumeId, spec.Kind);
            if (_children.Remove(key, out var previous))
            {
                previous.Dispose();
            }
            _children[key] = process;
            var record = new HelperRecord { Spec = spec, Pid = process.Id };
            Save(record);
            _logger.LogInformation("Started {Kind} of volume {Volume}: pid {Pid}", spec.Kind.Name(), spec.VolumeId, process.Id);
            return Report(record);
        }
        finally
        {
            _lock.Release();
        }
    }

    public async Task<HelperReport?> GetAsync(string volumeId, HelperKind kind, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            return Load(volumeId, kind) is { } record ? Report(record) : null;
        }
        finally
        {
            _lock.Release();
        }
    }

    public async Task<IReadOnlyList<HelperReport>> ListAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            return List();
        }
        finally
        {
            _lock.Release();
        }
    }

    private List<HelperReport> List() =>
        Directory.EnumerateFiles(_dir, "*.json").Order(StringComparer.Ordinal)
            .Select(f => JsonSerializer.Deserialize<HelperRecord>(File.ReadAllText(f), Json))
            .OfType<HelperRecord>()
            .Select(Report)
            .ToList();

    /// <summary>Stops the helper (SIGTERM, SIGKILL after <paramref name="grace"/>) and forgets it; null when it was unknown.</summary>
    public async Task<HelperReport?> StopAsync(string volumeId, HelperKind kind, TimeSpan grace, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            if (Load(volumeId, kind) is not { } record)
            {
                return null;
            }
            await DetachedProcess.StopAsync(record.Pid, record.Spec.Marker, grace);
            var report = Report(record);
            File.Delete(PathOf(volumeId, kind));
            if (_children.Remove(Key(volumeId, kind), out var child))
            {
                child.Dispose();
            }
            _logger.LogInformation("Stopped {Kind} of volume {Volume} (pid {Pid}, {State})", kind.Name(), volumeId, record.Pid, report.State);
            return report;
        }
        finally
        {
            _lock.Release();
        }
    }

    private HelperReport Report(HelperRecord record)
    {
        if (record.ExitCode is { } known)
        {
            return new HelperReport(record.Spec, record.Pid, HelperRunState.Exited, known);
        }
        if (_children.TryGetValue(Key(record.Spec.VolumeId, record.Spec.Kind), out var child) && child.Id == record.Pid)
        {
            if (!child.HasExited)
            {
                return new HelperReport(record.Spec, record.Pid, HelperRunState.Running, null);
            }
            child.WaitForExit();
            var exited = record with { ExitCode = child.ExitCode };
            Save(exited);
            if (exited.ExitCode != 0)
            {
                _logger.LogWarning("{Kind} of volume {Volume} (pid {Pid}) exited with code {Code}{Fenced}", record.Spec.Kind.Name(), record.Spec.VolumeId, record.Pid,
                    exited.ExitCode, exited.ExitCode == Node.VolumeHost.FencedExitCode && record.Spec.Kind == HelperKind.VolumeHost ? " (fenced)" : "");
            }
            return new HelperReport(record.Spec, record.Pid, HelperRunState.Exited, exited.ExitCode);
        }
        return DetachedProcess.IsAlive(record.Pid, record.Spec.Marker)
            ? new HelperReport(record.Spec, record.Pid, HelperRunState.Running, null)
            : new HelperReport(record.Spec, record.Pid, HelperRunState.Gone, null);
    }

    private HelperRecord? Load(string volumeId, HelperKind kind)
    {
        var path = PathOf(volumeId, kind);
        return File.Exists(path) ? JsonSerializer.Deserialize<HelperRecord>(File.ReadAllText(path), Json) : null;
    }

    /// <summary>Temp file renamed over the old one: a crash leaves the old or the new record.</summary>
    private void Save(HelperRecord record)
    {
        var path = PathOf(record.Spec.VolumeId, record.Spec.Kind);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(record, Json));
        File.Move(temp, path, overwrite: true);
    }

    private static string Key(string volumeId, HelperKind kind) => $"{kind.Name()}/{volumeId}";

    private string PathOf(string volumeId, HelperKind kind) => Path.Combine(_dir, $"{Uri.EscapeDataString(volumeId)}.{kind.Name()}.json");
}
