namespace FeitianK8s.Csi.Common;

/// <summary>The master's words for a node lease (NodeLeaseStatus.state).</summary>
public static class NodeLeaseStates
{
    public const string Live = "live";
    public const string Expired = "expired";
    public const string None = "none";
}
