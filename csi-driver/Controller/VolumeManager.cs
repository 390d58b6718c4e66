using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Controller;

/// <summary>A volume as the controller reports it.</summary>
public sealed record ManagedVolume(string Id, long SizeBytes, VolumeParameters Parameters, string LeaseHolder, IReadOnlyList<string> Readers)
{
    /// <summary>Every node the volume is published to: the lease holder (writable) and the lease-free readers.</summary>
    public IReadOnlyList<string> PublishedNodes =>
        (LeaseHolder.Length > 0 ? Readers.Append(LeaseHolder) : Readers).Distinct().Order(StringComparer.Ordinal).ToList();

    /// <summary>The name the CO created the volume with (see <see cref="VolumeIds"/>); the id for volumes made outside the driver.</summary>
    public string Name { get; init; } = Id;

    /// <summary>The volume's Pangu directory (log, checkpoints, snapshots, pins of clones).</summary>
    public string Directory { get; init; } = "";

    /// <summary>For a clone: directories of the volumes whose log segments it shares (each holds its pin).</summary>
    public IReadOnlyList<string> SharesSegmentsOf { get; init; } = [];

    /// <summary>For a clone: what it was made from; null for a volume made empty.</summary>
    public CloneSource? Source { get; init; }
}

/// <summary>What a clone was made from: a snapshot or a volume, by id (the clone's <see cref="VolumeSnapshots.SourceLabel"/>).</summary>
public sealed record CloneSource(CloneSourceKind Kind, string Id)
{
    public override string ToString() => $"{(Kind == CloneSourceKind.Snapshot ? "snapshot" : "volume")}/{Id}";

    public static CloneSource? Parse(string? label) => label?.Split('/', 2) switch
    {
        ["snapshot", var id] when id.Length > 0 => new CloneSource(CloneSourceKind.Snapshot, id),
        ["volume", var id] when id.Length > 0 => new CloneSource(CloneSourceKind.Volume, id),
        _ => null,
    };
}

public enum CloneSourceKind { Snapshot, Volume }

/// <summary>
/// The controller's volume operations over the master's volume API. The write lease is
/// the publish record: a writable ControllerPublish makes the node the lease holder
/// (a new epoch); ControllerUnpublish takes the lease back to no holder, which also
/// fences anything the node might still send. A read-only publish takes no lease; the
/// master records the node as a reader so the volume reports it and is not deleted under it.
/// </summary>
public sealed class VolumeManager(MasterConnection master, ILogger<VolumeManager> logger)
{
    public const long BlockSize = 4096;
    public const long DefaultSizeBytes = 1L << 30;

    /// <summary>Size a CapacityRange asks for: required rounded up to 4 KiB, honoring limit; 0/0 = 1 GiB (or the limit if smaller).</summary>
    public static long ChooseSize(long required, long limit, string volume)
    {
        if (required < 0 || limit < 0)
        {
            throw CsiErrors.OutOfRange($"volume '{volume}': capacity range must not be negative (required {required}, limit {limit})");
        }
        if (limit > 0 && required > limit)
        {
            throw CsiErrors.OutOfRange($"volume '{volume}': required bytes {required} exceed limit bytes {limit}");
        }
        if (required > long.MaxValue - BlockSize)
        {
            throw CsiErrors.OutOfRange($"volume '{volume}': required bytes {required} is too large");
        }
        var size = required == 0 ? DefaultSizeBytes : RoundUp(required);
        if (limit > 0 && size > limit)
        {
            size = required == 0 ? limit / BlockSize * BlockSize : size;
            if (size > limit || size < BlockSize)
            {
                throw CsiErrors.OutOfRange($"volume '{volume}': no multiple of {BlockSize} bytes lies in [{required}, {limit}]");
            }
        }
        return size;
    }

    public static long RoundUp(long bytes) => (bytes + BlockSize - 1) / BlockSize * BlockSize;

    /// <summary>
    /// Creates the volume the CO calls <paramref name="name"/> under the id <see cref="VolumeIds.FromName"/> gives it,
    /// or returns the one made by an earlier call with the same name and a compatible request.
    /// </summary>
    public async Task<ManagedVolume> CreateAsync(string name, long required, long limit, VolumeParameters parameters, CancellationToken ct)
    {
        VolumeIds.RequireValidName(name);
        var size = ChooseSize(required, limit, name);
        var id = VolumeIds.FromName(name);
        var existing = await StatAsync(id, ct);
        if (existing is not null)
        {
            return CheckEmpty(CheckCompatible(existing, name, required, limit, parameters));
        }
        var request = new CreateVolumeRequest { Name = id, SizeBytes = (ulong)size, Replicas = (uint)parameters.Replicas };
        request.Labels.Add(parameters.ToLabels());
        request.Labels[VolumeIds.NameLabel] = name;
        try
        {
            var info = await master.CallAsync("create volume", (c, o) => c.CreateVolumeAsync(request, o).ResponseAsync, ct);
            logger.LogInformation("Created volume {Volume} (CO name {Name}): {Size} bytes, {Replicas} replicas", id, name, size, parameters.Replicas);
            return ToManaged(info);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
        {
            // Created concurrently by someone else: same rule as an existing volume.
            var raced = await StatAsync(id, ct) ?? throw MasterErrors.ToCsi(e, $"create volume '{name}'");
            return CheckEmpty(CheckCompatible(raced, name, required, limit, parameters));
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"create volume '{name}' (id '{id}')");
        }
    }

    /// <summary>A request without a content source does not match a clone of the same name.</summary>
    private static ManagedVolume CheckEmpty(ManagedVolume existing) => existing.Source is null
        ? existing
        : throw CsiErrors.AlreadyExists($"volume '{existing.Name}' (id '{existing.Id}') exists as a clone of {existing.Source}; the request has no content source");

    internal static ManagedVolume CheckCompatible(ManagedVolume existing, string name, long required, long limit, VolumeParameters parameters)
    {
        if (existing.Name != name)
        {
            // A hash collision, or a volume made outside the driver under this id: never share it.
            throw CsiErrors.AlreadyExists($"volume id '{existing.Id}' for name '{name}' is taken by a volume named '{existing.Name}'");
        }
        if (existing.SizeBytes < required || (limit > 0 && existing.SizeBytes > limit) || existing.Parameters != parameters)
        {
            throw CsiErrors.AlreadyExists(
                $"volume '{name}' (id '{existing.Id}') exists with {existing.SizeBytes} bytes and {existing.Parameters}, incompatible with required {required}, limit {limit}, {parameters}");
        }
        return existing;
    }

    public async Task<ManagedVolume?> StatAsync(string id, CancellationToken ct)
    {
        try
        {
            var info = await master.CallAsync("stat volume", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = id }, o).ResponseAsync, ct);
            return ToManaged(info);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"stat volume '{id}'");
        }
    }

    public async Task<ManagedVolume> RequireAsync(string id, CancellationToken ct) =>
        await StatAsync(id, ct) ?? throw CsiErrors.NotFound($"volume '{id}' does not exist");

    /// <summary>Deletes the volume; a missing volume is already deleted. A published volume is FAILED_PRECONDITION.</summary>
    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        var volume = await StatAsync(id, ct);
        if (volume is null)
        {
            return;
        }
        if (volume.PublishedNodes.Count > 0)
        {
            throw CsiErrors.FailedPrecondition($"volume '{id}' is still published to node(s) {string.Join(", ", volume.PublishedNodes.Select(n => $"'{n}'"))}");
        }
        var dependents = await DependentsAsync(volume, ct);
        if (dependents.Count > 0)
        {
            throw CsiErrors.FailedPrecondition($"volume '{id}' has snapshots or clones sharing its data ({string.Join(", ", dependents)}); remove them first");
        }
        try
        {
            await master.CallAsync("delete volume", (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = id }, o).ResponseAsync, ct);
            logger.LogInformation("Deleted volume {Volume}", id);
            await RemovePinsAsync(volume, ct);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"delete volume '{id}'");
        }
    }

    /// <summary>
    /// A deleted clone no longer needs the segments it shared: its pins in the source volumes go
    /// (after the volume, so a crash in between leaks space, never data).
    /// </summary>
    private async Task RemovePinsAsync(ManagedVolume clone, CancellationToken ct)
    {
        foreach (var owner in clone.SharesSegmentsOf)
        {
            try
            {
                await master.CallAsync("delete pin", (c, o) => c.DeleteFileAsync(new DeleteFileRequest { Path = $"{owner}/refs/{clone.Id}" }, o).ResponseAsync, ct);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
            }
            catch (RpcException e)
            {
                logger.LogWarning("Volume {Volume} deleted, but its pin in {Owner} was not: {Error}; that space stays used", clone.Id, owner, e.Status.Detail);
            }
        }
    }

    /// <summary>Snapshots of the volume and clones pinning its log segments (see FeitianK8s.Core.Raf.RafLayout): deleting it would lose their data.</summary>
    private async Task<List<string>> DependentsAsync(ManagedVolume volume, CancellationToken ct)
    {
        var found = new List<string>();
        var root = volume.Directory.Length > 0 ? volume.Directory : $"/volumes/{volume.Id}";
        foreach (var (kind, directory) in new[] { ("snapshot", $"{root}/snapshots"), ("clone", $"{root}/refs") })
        {
            try
            {
                var list = await master.CallAsync("list files", (c, o) => c.ListFilesAsync(new ListFilesRequest { Path = directory }, o).ResponseAsync, ct);
                found.AddRange(list.Entries.Where(e => !e.IsDirectory)
                    .Select(e => e.Path[(e.Path.LastIndexOf('/') + 1)..])
                    .Where(n => !n.StartsWith('.'))
                    .Select(n => $"{kind} '{n}'"));
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
            }
            catch (RpcException e)
            {
                throw MasterErrors.ToCsi(e, $"list {kind}s of volume '{volume.Id}'");
            }
        }
        return found;
    }

    public async Task<IReadOnlyList<ManagedVolume>> ListAsync(CancellationToken ct)
    {
        try
        {
            var list = await master.CallAsync("list volumes", (c, o) => c.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, ct);
            return list.Volumes.Select(ToManaged).OrderBy(v => v.Id, StringComparer.Ordinal).ToList();
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, "list volumes");
        }
    }

    /// <summary>Grows the volume to at least <paramref name="required"/> (rounded up to 4 KiB); volumes never shrink.</summary>
    public async Task<long> ExpandAsync(string id, long required, long limit, CancellationToken ct)
    {
        var volume = await RequireAsync(id, ct);
        var size = ChooseSize(required, limit, id);
        if (volume.SizeBytes >= size)
        {
            if (limit > 0 && volume.SizeBytes > limit)
            {
                throw CsiErrors.OutOfRange($"volume '{id}' already has {volume.SizeBytes} bytes, more than limit {limit}; volumes do not shrink");
            }
            return volume.SizeBytes;
        }
        try
        {
            var info = await master.CallAsync("resize volume",
                (c, o) => c.ResizeVolumeAsync(new ResizeVolumeRequest { Name = id, SizeBytes = (ulong)size }, o).ResponseAsync, ct);
            logger.LogInformation("Expanded volume {Volume} from {Old} to {New} bytes", id, volume.SizeBytes, info.SizeBytes);
            return (long)info.SizeBytes;
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"expand volume '{id}' to {size} bytes");
        }
    }

    /// <summary>
    /// A writable publish gives <paramref name="node"/> the volume's write lease, unless it holds it
    /// already (taking it again would fence the engine the node runs). Another holder = FAILED_PRECONDITION,
    /// unless that holder's node lease expired: then the lease moves (a new epoch fences the old holder).
    /// </summary>
    public async Task PublishAsync(string id, string node, bool writable, CancellationToken ct)
    {
        var volume = await RequireAsync(id, ct);
        await RequireNodeAsync(node, ct);
        if (!writable)
        {
            if (!volume.Readers.Contains(node))
            {
                await SetReaderAsync(id, node, attached: true, ct);
                logger.LogInformation("Published volume {Volume} read-only to node {Node}", id, node);
            }
            return;
        }
        if (volume.LeaseHolder == node)
        {
            return;
        }
        if (volume.LeaseHolder.Length > 0)
        {
            var holderLease = await NodeLeaseAsync(volume.LeaseHolder, ct);
            if (holderLease?.State != NodeLeaseStates.Expired)
            {
                throw CsiErrors.FailedPrecondition($"volume '{id}' is published writable to node '{volume.LeaseHolder}' ({DescribeLease(holderLease)}); it cannot be published to node '{node}' too");
            }
            // Takeover: the holder's node lease expired (judged by the master's leader). The new epoch
            // fences the old holder on every chunk server before the new node writes anything.
            await AcquireLeaseAsync(id, node, ct);
            logger.LogWarning("Volume {Volume} taken over by node {Node} from node {Old}, whose node lease expired at {Expired:o}",
                id, node, volume.LeaseHolder, DateTimeOffset.FromUnixTimeMilliseconds(holderLease.ExpiresUnixMs));
            return;
        }
        await AcquireLeaseAsync(id, node, ct);
        logger.LogInformation("Published volume {Volume} to node {Node}", id, node);
    }

    /// <summary>The master leader's judgment of a node's lease; null for a holder that is no registered node (e.g. a CLI).</summary>
    private async Task<NodeLeaseStatus?> NodeLeaseAsync(string node, CancellationToken ct)
    {
        try
        {
            var info = await master.CallAsync("get node", (c, o) => c.GetNodeAsync(new GetNodeRequest { Id = node }, o).ResponseAsync, ct);
            return info.Lease;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"node lease of '{node}'");
        }
    }

    private static string DescribeLease(NodeLeaseStatus? lease) => lease?.State switch
    {
        null => "not a node with a node lease",
        NodeLeaseStates.Live => $"its node lease is live until {DateTimeOffset.FromUnixTimeMilliseconds(lease.ExpiresUnixMs):o}",
        _ => "it keeps no node lease",
    };

    /// <summary>
    /// Forgets <paramref name="node"/> as a reader and takes the lease back from it (new epoch, no
    /// holder); nothing to do where it is neither. An empty node id unpublishes from every node.
    /// </summary>
    public async Task UnpublishAsync(string id, string node, CancellationToken ct)
    {
        var volume = await StatAsync(id, ct);
        if (volume is null)
        {
            return;
        }
        foreach (var reader in volume.Readers.Where(r => node.Length == 0 || r == node))
        {
            await SetReaderAsync(id, reader, attached: false, ct);
            logger.LogInformation("Unpublished volume {Volume} (read-only) from node {Node}", id, reader);
        }
        if (volume.LeaseHolder.Length == 0 || (node.Length > 0 && volume.LeaseHolder != node))
        {
            return;
        }
        await AcquireLeaseAsync(id, "", ct);
        logger.LogInformation("Unpublished volume {Volume} from node {Node}", id, volume.LeaseHolder);
    }

    /// <summary>The node must be known to the master: its node plugin registered, or it runs a chunk server.</summary>
    private async Task RequireNodeAsync(string node, CancellationToken ct)
    {
        try
        {
            await master.CallAsync("get node", (c, o) => c.GetNodeAsync(new GetNodeRequest { Id = node }, o).ResponseAsync, ct);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw CsiErrors.NotFound($"node '{node}' is not known to the cluster: no node plugin registered it");
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"node '{node}'");
        }
    }

    private async Task SetReaderAsync(string id, string node, bool attached, CancellationToken ct)
    {
        try
        {
            await master.CallAsync("set volume reader",
                (c, o) => c.SetVolumeReaderAsync(new SetVolumeReaderRequest { Name = id, Node = node, Attached = attached }, o).ResponseAsync, ct);
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"reader '{node}' of volume '{id}'");
        }
    }

    private async Task AcquireLeaseAsync(string id, string holder, CancellationToken ct)
    {
        try
        {
            await master.CallAsync("acquire volume lease",
                (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = id, Holder = holder }, o).ResponseAsync, ct);
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"volume lease of '{id}' for '{holder}'");
        }
    }

    /// <summary>Free space of the live chunk servers divided by <paramref name="replicas"/>.</summary>
    public async Task<long> AvailableCapacityAsync(int replicas, CancellationToken ct)
    {
        try
        {
            var status = await master.CallAsync("cluster status", (c, o) => c.GetClusterStatusAsync(new GetClusterStatusRequest(), o).ResponseAsync, ct);
            var free = status.ChunkServers.Where(s => s.Alive).Sum(s => (decimal)(s.CapacityBytes > s.UsedBytes ? s.CapacityBytes - s.UsedBytes : 0));
            return (long)Math.Min(free / replicas, long.MaxValue);
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, "get capacity");
        }
    }

    internal static ManagedVolume ToManaged(VolumeInfo info) =>
        new(info.Name, (long)info.SizeBytes, VolumeParameters.FromLabels(info.Labels, (int)info.Replicas), info.LeaseHolder, info.Readers.ToList())
        {
            Name = VolumeIds.NameOf(info.Name, info.Labels),
            Directory = info.Directory,
            SharesSegmentsOf = info.Labels.GetValueOrDefault(VolumeSnapshots.SharesLabel, "")
                .Split(',', StringSplitOptions.RemoveEmptyEntries),
            Source = CloneSource.Parse(info.Labels.GetValueOrDefault(VolumeSnapshots.SourceLabel)),
        };
}
