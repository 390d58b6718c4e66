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
        if (!IsPositiveQuantity(spec.Masters.Storage))
        {
            errors.Add($"spec.masters.storage must be a positive Kubernetes quantity such as 10Gi, got '{spec.Masters.Storage}'");
        }
        CheckPorts(errors, "spec.masters", ("port", spec.Masters.Port), ("httpPort", spec.Masters.HttpPort), ("raftPort", spec.Masters.RaftPort));
        CheckPorts(errors, "spec.chunkServers", ("port", spec.ChunkServers.Port), ("httpPort", spec.ChunkServers.HttpPort));
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
        if (spec.NodeFailover.NodeLeaseSeconds is < 3 or > 3600)
        {
            errors.Add($"spec.nodeFailover.nodeLeaseSeconds must be between 3 and 3600, got {spec.NodeFailover.NodeLeaseSeconds}");
        }
        if (spec.Tls.Issuer is not ("auto" or "operator" or "cert-manager"))
        {
            errors.Add($"spec.tls.issuer must be auto, operator or cert-manager, got '{spec.Tls.Issuer}'");
        }
        errors.AddRange(RebuildFlags.Errors(spec.Rebuild));
        errors.AddRange(SnapshotTargetEnv.Errors(spec.SnapshotTarget));
        return errors;
    }

    private static bool IsPositiveQuantity(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        try
        {
            return new k8s.Models.ResourceQuantity(text).ToDecimal() > 0;
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Each port is a TCP port, and one component's ports differ (they share the pod's network).</summary>
    private static void CheckPorts(List<string> errors, string path, params (string Name, int Port)[] ports)
    {
        foreach (var (name, port) in ports.Where(p => p.Port is < 1 or > 65535))
        {
            errors.Add($"{path}.{name} must be between 1 and 65535, got {port}");
        }
        foreach (var clash in ports.GroupBy(p => p.Port).Where(g => g.Count() > 1))
        {
            errors.Add($"{path} uses port {clash.Key} for both {string.Join(" and ", clash.Select(p => p.Name))}");
        }
    }
}
