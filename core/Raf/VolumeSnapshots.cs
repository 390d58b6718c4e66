using System.Globalization;
using System.Text.RegularExpressions;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>A snapshot as the cluster lists it. <see cref="ReadyToUse"/>: its frozen index is written.</summary>
public sealed record SnapshotRecord(string Name, string Volume, long SizeBytes, DateTimeOffset CreatedAt, bool ReadyToUse)
{
    /// <summary>Labels its creator recorded with it (e.g. the name a CSI CO gave it); keys without spaces.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);
}

/// <summary>
/// What a clone carries besides its source's content: labels that replace or add to the source's
/// (the CSI controller records the CO's name and parameters this way) and a replica count for its own writes.
/// </summary>
public sealed record CloneOptions
{
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Replicas of the clone's own log; null keeps the source's.</summary>
    public uint? Replicas { get; init; }
}

public enum SnapshotErrorKind { InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, Unavailable }

/// <summary>A snapshot or clone request the cluster refused, with a kind to map to an exit code or a gRPC status.</summary>
public sealed class SnapshotException(SnapshotErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public SnapshotErrorKind Kind { get; } = kind;
}

/// <summary>
/// Snapshots, clones and restores of a cluster's volumes, over the master and Pangu files:
/// <list type="bullet">
/// <item><c>/snapshots/NAME</c> registers a snapshot cluster-wide (creating it claims the name
/// atomically); it names the volume and its size then.</item>
/// <item>The frozen index is <c>/volumes/VOL/snapshots/NAME</c>, written by the engine holding the
/// volume's write lease (it answers <c>snapshot-requests/NAME</c>); when nobody holds the lease,
/// this class opens the engine itself (taking the lease fences any engine that might appear).</item>
/// <item>A clone gets <c>shared-segments</c> (the source segments its index points at), pins
/// <c>refs/CLONE</c> in every volume owning one of them, and a first checkpoint: the frozen index.
/// Nothing else is copied; new writes go to the clone's own log.</item>
/// </list>
/// Nothing here touches the master's state machine: the master sees files and volumes only.
/// </summary>
public sealed partial class VolumeSnapshots(IPanguFileSystem fs, MasterConnection master, ILogger logger)
{
    public const string RegistryDirectory = "/snapshots";
    public const int MaxNameLength = 253;
    private const string CloneSnapshotPrefix = "~clone-";
    private const string CoNameLabel = "csi.feitian.io/name";
    private const string LabelField = "label";

    /// <summary>Label of a clone: where it came from, <c>snapshot/NAME</c> or <c>volume/NAME</c>.</summary>
    public const string SourceLabel = "feitian.io/source";

    /// <summary>Label of a clone: the directories of the volumes whose segments it shares (comma-separated), each holding its pin <c>refs/CLONE</c>.</summary>
    public const string SharesLabel = "feitian.io/shares-segments-of";
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);

    /// <summary>How long to wait for the lease holder's engine to answer a snapshot request.</summary>
    public TimeSpan EngineAnswerTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Lease holder name used when no engine holds a volume and this class opens it to freeze its index.</summary>
    public string Holder { get; init; } = $"feitian-snapshot@{Environment.MachineName}";

    public static string RegistryPath(string name) => $"{RegistryDirectory}/{name}";

    public static void CheckName(string what, string name)
    {
        if (name.Length is 0 or > MaxNameLength || !Dns1123Subdomain().IsMatch(name))
        {
            throw new SnapshotException(SnapshotErrorKind.InvalidArgument,
                $"{what} '{name}' is not a DNS-1123 subdomain of at most {MaxNameLength} characters (lowercase alphanumerics, '-' and '.')");
        }
    }

    /// <summary>Takes snapshot <paramref name="name"/> of <paramref name="volume"/>; the name must be new in the cluster.</summary>
    public Task<SnapshotRecord> CreateAsync(string volume, string name, CancellationToken ct) =>
        CreateAsync(volume, name, new Dictionary<string, string>(StringComparer.Ordinal), ct);

    /// <summary>Takes snapshot <paramref name="name"/> of <paramref name="volume"/>, recording <paramref name="labels"/> with it.</summary>
    public async Task<SnapshotRecord> CreateAsync(string volume, string name, IReadOnlyDictionary<string, string> labels, CancellationToken ct)
    {
        CheckName("snapshot name", name);
        foreach (var (key, value) in labels)
        {
            if (key.Length == 0 || key.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)) || value.Any(char.IsControl))
            {
                throw new SnapshotException(SnapshotErrorKind.InvalidArgument, $"snapshot '{name}': label '{key}' must be a key without spaces and a value without control characters");
            }
        }
        var info = await StatVolumeAsync(volume, ct);
        // Whole milliseconds, as the registry keeps it: what this call returns is what a later read returns.
        var createdAt = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        await ClaimAsync(name, volume, (long)info.SizeBytes, createdAt, (int)info.Replicas, labels, ct);
        try
        {
            await FreezeAsync(info, name, ct);
        }
        catch
        {
            await RafFiles.DeleteIfExistsAsync(fs, RegistryPath(name), null, CancellationToken.None);
            throw;
        }
        logger.LogInformation("Snapshot {Snapshot} of volume {Volume} taken", name, volume);
        return new SnapshotRecord(name, volume, (long)info.SizeBytes, createdAt, ReadyToUse: true) { Labels = new Dictionary<string, string>(labels, StringComparer.Ordinal) };
    }

    /// <summary>
    /// Claims the name cluster-wide: the master creates a file only once, so of two creators of one
    /// name exactly one gets here; the content follows (an empty record lists as not ready).
    /// </summary>
    private async Task ClaimAsync(string name, string volume, long size, DateTimeOffset createdAt, int replicas, IReadOnlyDictionary<string, string> labels, CancellationToken ct)
    {
        try
        {
            await fs.CreateAsync(RegistryPath(name), replicas, null, ct);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.AlreadyExists)
        {
            throw new SnapshotException(SnapshotErrorKind.AlreadyExists, $"snapshot '{name}' already exists", e);
        }
        var content = RafFiles.SealText([
            $"volume {volume}",
            $"sizeBytes {size.ToString(CultureInfo.InvariantCulture)}",
            $"createdUnixMs {createdAt.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)}",
            .. labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{LabelField} {l.Key} {l.Value}"),
        ]);
        var appender = await fs.OpenForAppendAsync(RegistryPath(name), null, ct);
        await using (appender)
        {
            await appender.AppendAsync(content, durable: true, ct);
            await appender.CloseAsync(ct);
        }
    }

    public async Task<IReadOnlyList<SnapshotRecord>> ListAsync(string? volume, CancellationToken ct)
    {
        var result = new List<SnapshotRecord>();
        foreach (var name in await RafFiles.ListNamesAsync(fs, RegistryDirectory, ct))
        {
            if (await GetAsync(name, ct) is { } record && (volume is null || record.Volume == volume))
            {
                result.Add(record);
            }
        }
        return result;
    }

    /// <summary>Null when no such snapshot is registered.</summary>
    public async Task<SnapshotRecord?> GetAsync(string name, CancellationToken ct)
    {
        var bytes = await RafFiles.TryReadAllAsync(fs, RegistryPath(name), ct);
        if (bytes is null)
        {
            return null;
        }
        var lines = RafFiles.OpenText(bytes) ?? [];
        var fields = lines
            .Select(l => l.Split(' ', 2))
            .Where(p => p.Length == 2 && p[0] != LabelField)
            .ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);
        var labels = lines
            .Select(l => l.Split(' ', 3))
            .Where(p => p.Length == 3 && p[0] == LabelField)
            .ToDictionary(p => p[1], p => p[2], StringComparer.Ordinal);
        var volume = fields.GetValueOrDefault("volume", "");
        var size = long.TryParse(fields.GetValueOrDefault("sizeBytes"), CultureInfo.InvariantCulture, out var s) ? s : 0;
        var created = long.TryParse(fields.GetValueOrDefault("createdUnixMs"), CultureInfo.InvariantCulture, out var ms) ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : DateTimeOffset.UnixEpoch;
        var ready = volume.Length > 0 && await ReadFrozenAsync(volume, name, ct) is not null;
        return new SnapshotRecord(name, volume, size, created, ready) { Labels = labels };
    }

    /// <summary>Removes the snapshot; its space is freed by the next GC pass of the volume's engine once no clone shares it.</summary>
    public async Task RemoveAsync(string name, CancellationToken ct)
    {
        var record = await GetAsync(name, ct) ?? throw new SnapshotException(SnapshotErrorKind.NotFound, $"snapshot '{name}' does not exist");
        if (record.Volume.Length > 0 && await TryStatVolumeAsync(record.Volume, ct) is { } info)
        {
            var layout = new RafLayout(info.Directory);
            await RafFiles.DeleteIfExistsAsync(fs, layout.SnapshotRequestPath(name), null, ct);
            await RafFiles.DeleteIfExistsAsync(fs, layout.SnapshotPath(name), null, ct);
        }
        await RafFiles.DeleteIfExistsAsync(fs, RegistryPath(name), null, ct);
        logger.LogInformation("Snapshot {Snapshot} of volume {Volume} removed", name, record.Volume);
    }

    /// <summary>A new volume whose content is snapshot <paramref name="snapshot"/>'s, usable at once; <paramref name="sizeBytes"/> may make it bigger.</summary>
    public Task<VolumeInfo> CreateVolumeFromSnapshotAsync(string name, string snapshot, long? sizeBytes, CancellationToken ct) =>
        CreateVolumeFromSnapshotAsync(name, snapshot, sizeBytes, new CloneOptions(), ct);

    /// <summary>As <see cref="CreateVolumeFromSnapshotAsync(string, string, long?, CancellationToken)"/>, with the clone's own labels and replicas.</summary>
    public async Task<VolumeInfo> CreateVolumeFromSnapshotAsync(string name, string snapshot, long? sizeBytes, CloneOptions options, CancellationToken ct)
    {
        var record = await GetAsync(snapshot, ct) ?? throw new SnapshotException(SnapshotErrorKind.NotFound, $"snapshot '{snapshot}' does not exist");
        var source = await StatVolumeAsync(record.Volume, ct);
        var frozen = await ReadFrozenAsync(record.Volume, snapshot, ct)
            ?? throw new SnapshotException(SnapshotErrorKind.FailedPrecondition, $"snapshot '{snapshot}' is not ready to use");
        return await CloneAsync(name, source, frozen, record.SizeBytes, sizeBytes, $"snapshot/{snapshot}", options, ct);
    }

    /// <summary>A new volume with <paramref name="source"/>'s current content (a crash-consistent copy), usable at once.</summary>
    public Task<VolumeInfo> CreateVolumeFromVolumeAsync(string name, string source, long? sizeBytes, CancellationToken ct) =>
        CreateVolumeFromVolumeAsync(name, source, sizeBytes, new CloneOptions(), ct);

    /// <summary>As <see cref="CreateVolumeFromVolumeAsync(string, string, long?, CancellationToken)"/>, with the clone's own labels and replicas.</summary>
    public async Task<VolumeInfo> CreateVolumeFromVolumeAsync(string name, string source, long? sizeBytes, CloneOptions options, CancellationToken ct)
    {
        CheckName("volume name", name);
        var info = await StatVolumeAsync(source, ct);
        if (await TryStatVolumeAsync(name, ct) is not null)
        {
            throw new SnapshotException(SnapshotErrorKind.AlreadyExists, $"volume '{name}' already exists");
        }
        var transient = CloneSnapshotPrefix + name;
        var layout = new RafLayout(info.Directory);
        try
        {
            await FreezeAsync(info, transient, ct);
            var frozen = await ReadFrozenAsync(source, transient, ct)
                ?? throw new SnapshotException(SnapshotErrorKind.FailedPrecondition, $"the frozen index of volume '{source}' could not be read back");
            return await CloneAsync(name, info, frozen, (long)info.SizeBytes, sizeBytes, $"volume/{source}", options, ct);
        }
        finally
        {
            // The clone's own pins keep what it shares from now on.
            await RafFiles.DeleteIfExistsAsync(fs, layout.SnapshotPath(transient), null, CancellationToken.None);
        }
    }

    /// <summary>
    /// Deletes a volume unless other volumes share its data (clones) or it has snapshots; a clone's
    /// pins in its sources are removed after the volume is gone (a crash in between leaks space, never data).
    /// </summary>
    public async Task DeleteVolumeAsync(string name, CancellationToken ct)
    {
        var info = await StatVolumeAsync(name, ct);
        var layout = await RafSharedSegments.LoadLayoutAsync(fs, info.Directory, ct);
        var clones = await RafFiles.ListNamesAsync(fs, layout.RefsDirectory, ct);
        if (clones.Count > 0)
        {
            throw new SnapshotException(SnapshotErrorKind.FailedPrecondition,
                $"volume '{name}' shares its data with clone(s) {string.Join(", ", clones)}; delete them first");
        }
        var snapshots = (await ListAsync(name, ct)).Select(s => s.Name).ToList();
        if (snapshots.Count > 0)
        {
            throw new SnapshotException(SnapshotErrorKind.FailedPrecondition,
                $"volume '{name}' has snapshot(s) {string.Join(", ", snapshots)}; remove them first");
        }
        await CallMasterAsync("delete volume", name, (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = name }, o).ResponseAsync, ct);
        await RemovePinsAsync(name, layout, ct);
        logger.LogInformation("Volume {Volume} deleted", name);
    }

    private async Task RemovePinsAsync(string clone, RafLayout layout, CancellationToken ct)
    {
        foreach (var owner in layout.SharedSegments.Values.Select(RafLayout.VolumeDirectoryOf).Distinct(StringComparer.Ordinal))
        {
            await RafFiles.DeleteIfExistsAsync(fs, new RafLayout(owner).RefPath(clone), null, ct);
        }
    }

    private async Task<VolumeInfo> CloneAsync(string name, VolumeInfo source, RafCheckpoint frozen, long sourceSize, long? sizeBytes, string origin, CloneOptions options, CancellationToken ct)
    {
        CheckName("volume name", name);
        var size = sizeBytes ?? sourceSize;
        if (size < sourceSize)
        {
            throw new SnapshotException(SnapshotErrorKind.InvalidArgument, $"volume '{name}': {size} bytes is smaller than its source ({sourceSize} bytes)");
        }
        var sourceLayout = await RafSharedSegments.LoadLayoutAsync(fs, source.Directory, ct);
        var shared = frozen.Extents.Select(e => e.Segment).Distinct().ToDictionary(s => s, sourceLayout.SegmentPath);
        var request = new CreateVolumeRequest { Name = name, SizeBytes = (ulong)size, Replicas = options.Replicas ?? source.Replicas };
        // Parameters (fs type, rack spread) carry over unless the options say otherwise; the name a CO gave the source does not.
        request.Labels.Add(source.Labels.Where(l => l.Key != CoNameLabel && l.Key != SharesLabel).ToDictionary(l => l.Key, l => l.Value));
        foreach (var (key, value) in options.Labels)
        {
            request.Labels[key] = value;
        }
        request.Labels[SourceLabel] = origin;
        // Whoever deletes the clone through the master alone (the CSI controller) finds the pins to remove here.
        request.Labels[SharesLabel] = string.Join(",", shared.Values.Select(RafLayout.VolumeDirectoryOf).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal));
        VolumeInfo clone;
        try
        {
            clone = await CallMasterAsync("create volume", name, (c, o) => c.CreateVolumeAsync(request, o).ResponseAsync, ct);
        }
        catch (SnapshotException e) when (e.Kind == SnapshotErrorKind.AlreadyExists)
        {
            throw new SnapshotException(SnapshotErrorKind.AlreadyExists, $"volume '{name}' already exists", e);
        }
        var layout = new RafLayout(clone.Directory, shared);
        try
        {
            // Pins first: from here on no source GC frees what the clone will point at.
            foreach (var owner in shared.GroupBy(p => RafLayout.VolumeDirectoryOf(p.Value), StringComparer.Ordinal))
            {
                await RafFiles.WriteAtomicallyAsync(fs, new RafLayout(owner.Key).RefPath(name), RafSegmentPins.SerializePin(owner.Select(p => p.Key)), (int)source.Replicas, null, ct);
            }
            await RafFiles.WriteAtomicallyAsync(fs, layout.SharedSegmentsPath, RafSharedSegments.Serialize(shared), (int)source.Replicas, null, ct);
            // The clone's own segments are numbered above every shared one, so a number never names two files.
            var first = new RafCheckpoint(new LogPosition(shared.Count == 0 ? 0 : shared.Keys.Max(), 0, frozen.Position.Seq), frozen.Extents);
            await RafFiles.WriteAtomicallyAsync(fs, layout.CheckpointPath(first.Position.Seq), first.Serialize(), (int)source.Replicas, null, ct);
        }
        catch
        {
            await CallMasterAsync("delete volume", name, (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = name }, o).ResponseAsync, CancellationToken.None);
            await RemovePinsAsync(name, layout, CancellationToken.None);
            throw;
        }
        logger.LogInformation("Volume {Volume} created from {Origin}: {Size} bytes sharing {Segments} segments", name, origin, size, shared.Count);
        return clone;
    }

    /// <summary>Has the engine holding <paramref name="volume"/>'s lease freeze its index as snapshot <paramref name="name"/>; without a holder, opens the engine here.</summary>
    private async Task FreezeAsync(VolumeInfo volume, string name, CancellationToken ct)
    {
        if (volume.LeaseHolder.Length == 0 && await TryFreezeHereAsync(volume, name, ct))
        {
            return;
        }
        var layout = new RafLayout(volume.Directory);
        await RafFiles.WriteAtomicallyAsync(fs, layout.SnapshotRequestPath(name), [], (int)volume.Replicas, null, ct);
        var deadline = DateTime.UtcNow + EngineAnswerTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await ReadFrozenAsync(volume.Name, name, ct) is not null)
            {
                return;
            }
            await Task.Delay(Poll, ct);
        }
        await RafFiles.DeleteIfExistsAsync(fs, layout.SnapshotRequestPath(name), null, CancellationToken.None);
        var holder = (await StatVolumeAsync(volume.Name, ct)).LeaseHolder;
        throw new SnapshotException(SnapshotErrorKind.Unavailable,
            $"volume '{volume.Name}' is held by '{holder}', whose engine did not take the snapshot within {EngineAnswerTimeout.TotalSeconds:0} s " +
            "(an engine answers while it serves the volume; if that holder is gone, open the volume once or release its lease)");
    }

    /// <summary>Opens the idle volume's engine (a new lease epoch), freezes its index and gives the lease back; false when another engine took the volume meanwhile.</summary>
    private async Task<bool> TryFreezeHereAsync(VolumeInfo volume, string name, CancellationToken ct)
    {
        var options = new RafOptions { Holder = Holder, GcInterval = null, SnapshotRequestInterval = null };
        var engine = await RafVolume.OpenAsync(fs, new MasterVolumeCatalog(master), volume.Name, options, logger, ct);
        try
        {
            await engine.TakeSnapshotAsync(name, ct);
        }
        catch (BlockDeviceException e) when (e.Kind == BlockErrorKind.Fenced)
        {
            await engine.DisposeAsync();
            return false;
        }
        await engine.DisposeAsync();
        var now = await StatVolumeAsync(volume.Name, ct);
        if (now.LeaseHolder == Holder)
        {
            await CallMasterAsync("release lease", volume.Name,
                (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = volume.Name, Holder = "" }, o).ResponseAsync, ct);
        }
        return true;
    }

    private async Task<RafCheckpoint?> ReadFrozenAsync(string volume, string name, CancellationToken ct)
    {
        var info = await TryStatVolumeAsync(volume, ct);
        if (info is null)
        {
            return null;
        }
        var bytes = await RafFiles.TryReadAllAsync(fs, new RafLayout(info.Directory).SnapshotPath(name), ct);
        return bytes is null ? null : RafCheckpoint.TryParse(bytes);
    }

    private async Task<VolumeInfo> StatVolumeAsync(string name, CancellationToken ct) =>
        await TryStatVolumeAsync(name, ct) ?? throw new SnapshotException(SnapshotErrorKind.NotFound, $"volume '{name}' does not exist");

    private async Task<VolumeInfo?> TryStatVolumeAsync(string name, CancellationToken ct)
    {
        try
        {
            return await CallMasterAsync("stat volume", name, (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = name }, o).ResponseAsync, ct);
        }
        catch (SnapshotException e) when (e.Kind is SnapshotErrorKind.NotFound or SnapshotErrorKind.InvalidArgument)
        {
            return null;
        }
    }

    private async Task<T> CallMasterAsync<T>(string what, string name, Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct)
    {
        try
        {
            return await master.CallAsync(what, call, ct);
        }
        catch (RpcException e)
        {
            var kind = e.StatusCode switch
            {
                StatusCode.NotFound => SnapshotErrorKind.NotFound,
                StatusCode.AlreadyExists => SnapshotErrorKind.AlreadyExists,
                StatusCode.InvalidArgument or StatusCode.OutOfRange => SnapshotErrorKind.InvalidArgument,
                StatusCode.FailedPrecondition => SnapshotErrorKind.FailedPrecondition,
                _ => SnapshotErrorKind.Unavailable,
            };
            throw new SnapshotException(kind, $"{what} '{name}': {e.Status.Detail}", e);
        }
    }

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1123Subdomain();
}
