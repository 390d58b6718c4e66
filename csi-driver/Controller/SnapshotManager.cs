using FeitianK8s.Core.Raf;
using FeitianK8s.Csi.Common;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// The controller's snapshot operations over the cluster's RAF snapshots (<see cref="VolumeSnapshots"/>,
/// the same code the CLI's <c>feitian snapshot</c> runs): the CO's name maps to an id
/// (<see cref="SnapshotIds"/>), create is idempotent by name and source, delete of what is missing succeeds.
/// </summary>
public sealed class SnapshotManager(VolumeSnapshots snapshots, CsiDriverOptions options, ISnapshotBackups backups, ILogger<SnapshotManager> logger)
{
    /// <summary>
    /// Takes the snapshot the CO calls <paramref name="name"/> of volume <paramref name="sourceVolumeId"/>, or
    /// returns the one an earlier call with the same name and source took. Same name, other source: ALREADY_EXISTS.
    /// </summary>
    public async Task<SnapshotRecord> CreateAsync(string name, string sourceVolumeId, SnapshotParameters parameters, CancellationToken ct)
    {
        VolumeIds.RequireValidName(name, "CreateSnapshot");
        var id = SnapshotIds.FromName(name);
        if (await GetAsync(id, ct) is { } existing)
        {
            var same = CheckSame(existing, name, sourceVolumeId);
            // A retry of a backed-up snapshot resumes its upload if it was interrupted (stored blocks are not sent again).
            if (SnapshotBackupRules.Require(parameters, options.SnapshotTarget, backups, name) is { } retryTarget)
            {
                await backups.StartAsync(same, retryTarget, ct);
            }
            return same;
        }
        // A backup that cannot be made refuses the request before anything is taken.
        var backupTarget = SnapshotBackupRules.Require(parameters, options.SnapshotTarget, backups, name);
        var labels = new Dictionary<string, string>(parameters.ToLabels(), StringComparer.Ordinal) { [VolumeIds.NameLabel] = name };
        SnapshotRecord taken;
        try
        {
            taken = await snapshots.CreateAsync(sourceVolumeId, id, labels, ct);
            logger.LogInformation("Snapshot {Snapshot} (CO name {Name}) of volume {Volume} taken", id, name, sourceVolumeId);
        }
        catch (SnapshotException e) when (e.Kind == SnapshotErrorKind.AlreadyExists)
        {
            // Taken concurrently under the same id: same rule as an existing snapshot.
            var raced = await GetAsync(id, ct) ?? throw ToCsi(e, $"create snapshot '{name}'");
            return CheckSame(raced, name, sourceVolumeId);
        }
        catch (SnapshotException e)
        {
            throw ToCsi(e, $"create snapshot '{name}' (id '{id}') of volume '{sourceVolumeId}'");
        }
        if (backupTarget is not null)
        {
            await backups.StartAsync(taken, backupTarget, ct);
        }
        return taken;
    }

    private static SnapshotRecord CheckSame(SnapshotRecord existing, string name, string sourceVolumeId)
    {
        var existingName = SnapshotIds.NameOf(existing.Name, existing.Labels);
        if (existingName != name)
        {
            throw CsiErrors.AlreadyExists($"snapshot id '{existing.Name}' for name '{name}' is taken by a snapshot named '{existingName}'");
        }
        if (existing.Volume != sourceVolumeId)
        {
            throw CsiErrors.AlreadyExists($"snapshot '{name}' (id '{existing.Name}') exists of volume '{existing.Volume}', not of '{sourceVolumeId}'");
        }
        return existing;
    }

    /// <summary>Null when there is no such snapshot (or the id cannot name one).</summary>
    public async Task<SnapshotRecord?> GetAsync(string id, CancellationToken ct)
    {
        if (!IsPossibleId(id))
        {
            return null;
        }
        try
        {
            return await snapshots.GetAsync(id, ct);
        }
        catch (SnapshotException e)
        {
            throw ToCsi(e, $"snapshot '{id}'");
        }
    }

    /// <summary>Deletes the snapshot; a missing one is already deleted. Clones made from it keep their data (they pin it themselves).</summary>
    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        if (!IsPossibleId(id))
        {
            return;
        }
        try
        {
            await snapshots.RemoveAsync(id, ct);
            logger.LogInformation("Snapshot {Snapshot} deleted", id);
        }
        catch (SnapshotException e) when (e.Kind == SnapshotErrorKind.NotFound)
        {
        }
        catch (SnapshotException e)
        {
            throw ToCsi(e, $"delete snapshot '{id}'");
        }
    }

    /// <summary>Snapshots sorted by id, only <paramref name="snapshotId"/> and/or only those of <paramref name="sourceVolumeId"/> when given.</summary>
    public async Task<IReadOnlyList<SnapshotRecord>> ListAsync(string? snapshotId, string? sourceVolumeId, CancellationToken ct)
    {
        IReadOnlyList<SnapshotRecord> found;
        if (snapshotId is not null)
        {
            found = await GetAsync(snapshotId, ct) is { } one ? [one] : [];
        }
        else
        {
            try
            {
                found = await snapshots.ListAsync(null, ct);
            }
            catch (SnapshotException e)
            {
                throw ToCsi(e, "list snapshots");
            }
        }
        return found.Where(s => sourceVolumeId is null || s.Volume == sourceVolumeId).OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>Ids are DNS-1123 names; anything else (a CO's made-up id) names no snapshot.</summary>
    private static bool IsPossibleId(string id)
    {
        try
        {
            VolumeSnapshots.CheckName("snapshot id", id);
            return true;
        }
        catch (SnapshotException)
        {
            return false;
        }
    }

    public static RpcException ToCsi(SnapshotException e, string what) => e.Kind switch
    {
        SnapshotErrorKind.InvalidArgument => CsiErrors.InvalidArgument($"{what}: {e.Message}"),
        SnapshotErrorKind.NotFound => CsiErrors.NotFound($"{what}: {e.Message}"),
        SnapshotErrorKind.AlreadyExists => CsiErrors.AlreadyExists($"{what}: {e.Message}"),
        SnapshotErrorKind.FailedPrecondition => CsiErrors.FailedPrecondition($"{what}: {e.Message}"),
        _ => CsiErrors.Unavailable($"{what}: {e.Message}"),
    };
}
