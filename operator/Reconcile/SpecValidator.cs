using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Reconcile;

/// <summary>
/// Checks what the CRD schema cannot express. The schema already refuses wrong types and ranges
/// at kubectl apply; this runs again in the operator because an old CRD may be installed.
/// </summary>
public static class SpecValidator
{
    public static IReadOnlyList<string> Validate(StorageClusterSpec spec)
    {
        var errors = new List<string>();
        if (spec.Masters.Replicas is not (1 or 3 or 5))
        {
            errors.Add($"spec.masters.replicas must be 1, 3 or 5, got {spec.Masters.Replicas}");
        }
        if (spec.Replication.Factor is < 1 or > 5)
        {
            errors.Add($"spec.replication.factor must be between 1 and 5, got {spec.Replication.Factor}");
        }
        if (spec.Replication.MinRacks < 1 || spec.Replication.MinRacks > spec.Replication.Factor)
        {
            errors.Add($"spec.replication.minRacks must be between 1 and factor ({spec.Replication.Factor}), got {spec.Replication.MinRacks}");
        }
        if (spec.ChunkServers.DataDirs.Count == 0)
        {
            errors.Add("spec.chunkServers.dataDirs must name at least one host path");
        }
        foreach (var dir in spec.ChunkServers.DataDirs.Where(d => !d.StartsWith('/')))
        {
            errors.Add($"spec.chunkServers.dataDirs entry '{dir}' is not an absolute path");
        }
        if (spec.ChunkServers.DataDirs.Distinct().Count() != spec.ChunkServers.DataDirs.Count)
        {
            errors.Add("spec.chunkServers.dataDirs has duplicates");
        }
        if (string.IsNullOrWhiteSpace(spec.ChunkServers.RackLabel))
        {
            errors.Add("spec.chunkServers.rackLabel must not be empty");
        }
        errors.AddRange(RebuildFlags.Errors(spec.Rebuild));
        errors.AddRange(SnapshotTargetEnv.Errors(spec.SnapshotTarget));
        return errors;
    }
}
