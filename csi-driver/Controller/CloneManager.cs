using System.Globalization;
using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// CreateVolume with a content source: a clone of a snapshot or of a volume, made by the cluster's
/// copy-on-write clones (<see cref="VolumeSnapshots"/>, as <c>feitian volume create --from-…</c>),
/// usable at once. Idempotent by name and source; a missing source is NOT_FOUND; a capacity range
/// that cannot hold the source is OUT_OF_RANGE; larger than the source is allowed.
/// </summary>
public sealed class CloneManager(VolumeManager volumes, SnapshotManager snapshots, VolumeSnapshots clones, ILogger<CloneManager> logger)
{
    public async Task<ManagedVolume> CreateAsync(string name, long required, long limit, VolumeParameters parameters, CloneSource source, CancellationToken ct)
    {
        VolumeIds.RequireValidName(name);
        CsiErrors.Require(source.Id.Length > 0, $"CreateVolume '{name}': the content source names no {source.Kind.ToString().ToLowerInvariant()}");
        // Validates the range on its own (negative, required > limit) before anything is looked up.
        VolumeManager.ChooseSize(required, limit, name);
        var id = VolumeIds.FromName(name);
        if (await volumes.StatAsync(id, ct) is { } existing)
        {
            return CheckSameSource(VolumeManager.CheckCompatible(existing, name, required, limit, parameters), name, source);
        }
        var sourceSize = await SourceSizeAsync(name, source, ct);
        var size = ChooseCloneSize(required, limit, sourceSize, name);
        var labels = new Dictionary<string, string>(parameters.ToLabels(), StringComparer.Ordinal) { [VolumeIds.NameLabel] = name };
        var options = new CloneOptions { Labels = labels, Replicas = (uint)parameters.Replicas };
        try
        {
            var info = source.Kind == CloneSourceKind.Snapshot
                ? await clones.CreateVolumeFromSnapshotAsync(id, source.Id, size, options, ct)
                : await clones.CreateVolumeFromVolumeAsync(id, source.Id, size, options, ct);
            logger.LogInformation("Created volume {Volume} (CO name {Name}) from {Source}: {Size} bytes", id, name, source, size);
            return VolumeManager.ToManaged(info);
        }
        catch (SnapshotException e) when (e.Kind == SnapshotErrorKind.AlreadyExists)
        {
            var raced = await volumes.StatAsync(id, ct) ?? throw SnapshotManager.ToCsi(e, $"create volume '{name}' from {source}");
            return CheckSameSource(VolumeManager.CheckCompatible(raced, name, required, limit, parameters), name, source);
        }
        catch (SnapshotException e)
        {
            throw SnapshotManager.ToCsi(e, $"create volume '{name}' (id '{id}') from {source}");
        }
    }

    /// <summary>
    /// The clone's size: at least the source's (a clone never cuts its source's data), at least
    /// <paramref name="required"/>, at most <paramref name="limit"/>; OUT_OF_RANGE when no such size exists.
    /// </summary>
    public static long ChooseCloneSize(long required, long limit, long sourceSize, string volume)
    {
        var size = Math.Max(VolumeManager.RoundUp(required), sourceSize);
        if (limit > 0 && size > limit)
        {
            throw CsiErrors.OutOfRange(string.Create(CultureInfo.InvariantCulture,
                $"volume '{volume}': limit bytes {limit} is smaller than its source ({sourceSize} bytes); a clone is at least as large as its source"));
        }
        return size;
    }

    private async Task<long> SourceSizeAsync(string name, CloneSource source, CancellationToken ct)
    {
        if (source.Kind == CloneSourceKind.Snapshot)
        {
            var snapshot = await snapshots.GetAsync(source.Id, ct)
                ?? throw CsiErrors.NotFound($"CreateVolume '{name}': source snapshot '{source.Id}' does not exist");
            if (!snapshot.ReadyToUse)
            {
                throw CsiErrors.Unavailable($"CreateVolume '{name}': source snapshot '{source.Id}' is not ready to use yet");
            }
            return snapshot.SizeBytes;
        }
        var volume = await volumes.StatAsync(source.Id, ct)
            ?? throw CsiErrors.NotFound($"CreateVolume '{name}': source volume '{source.Id}' does not exist");
        return volume.SizeBytes;
    }

    private static ManagedVolume CheckSameSource(ManagedVolume existing, string name, CloneSource source)
    {
        if (existing.Source != source)
        {
            throw CsiErrors.AlreadyExists(
                $"volume '{name}' (id '{existing.Id}') exists with content source {existing.Source?.ToString() ?? "none"}, not {source}");
        }
        return existing;
    }
}
