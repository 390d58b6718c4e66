namespace FeitianK8s.Master.State;

/// <summary>Bounds of a node lease (RegisterNode, RenewNodeLease).</summary>
public static class NodeLeaseRules
{
    public const uint MaxLeaseSeconds = 3600;

    public static MasterError? Check(uint leaseSeconds) => leaseSeconds is < 1 or > MaxLeaseSeconds
        ? MasterError.Invalid($"lease_seconds must be 1..{MaxLeaseSeconds} (got {leaseSeconds})")
        : null;
}
