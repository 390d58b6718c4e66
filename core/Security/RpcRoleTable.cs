using System.Collections.Frozen;
using static FeitianK8s.Core.Security.ComponentRoles;

namespace FeitianK8s.Core.Security;

/// <summary>
/// Which roles may call each gRPC method of the master and the chunk servers, by full method
/// name ("/feitian.pangu.v1.Master/CreateVolume"). A method missing from the table is refused to
/// everyone: a new RPC must be added here, or no one can call it once TLS is on.
/// </summary>
public sealed class RpcRoleTable
{
    private readonly FrozenDictionary<string, FrozenSet<string>> _allowed;

    public RpcRoleTable(IReadOnlyDictionary<string, string[]> allowed)
    {
        foreach (var (method, roles) in allowed)
        {
            var unknown = roles.FirstOrDefault(r => !IsKnown(r));
            if (unknown is not null)
            {
                throw new ArgumentException($"{method} names unknown role '{unknown}'", nameof(allowed));
            }
        }
        _allowed = allowed.ToFrozenDictionary(p => p.Key, p => p.Value.ToFrozenSet(StringComparer.Ordinal), StringComparer.Ordinal);
    }

    public const string MasterService = "/feitian.pangu.v1.Master/";
    public const string ChunkServerService = "/feitian.pangu.v1.ChunkServer/";

    /// <summary>
    /// Processes that read and write files through the Pangu client: volume engines (CSI node plugin and
    /// its volume hosts, the CLI), the CSI controller (snapshots, clones) and the operator (clones of
    /// snapshots write the clone's metadata files). Never a master or a chunk server.
    /// </summary>
    private static readonly string[] DataClients = [CsiController, CsiNode, Admin, Operator];

    /// <summary>Processes that hold volume write leases: the volume engines and the CSI controller that grants them.</summary>
    private static readonly string[] LeaseHolders = [CsiController, CsiNode, Admin];

    /// <summary>Every component: read-only cluster state.</summary>
    private static readonly string[] Everyone = [.. All];

    /// <summary>The cluster's own rules (see the README, "Mutual TLS").</summary>
    public static RpcRoleTable Default { get; } = new(new Dictionary<string, string[]>
    {
        // Only chunk servers heartbeat and report.
        [MasterService + "RegisterChunkServer"] = [ChunkServer],
        [MasterService + "Heartbeat"] = [ChunkServer],
        [MasterService + "ReportBadReplica"] = [ChunkServer, .. DataClients],
        [MasterService + "GetClusterStatus"] = Everyone,
        [MasterService + "GetMasterState"] = Everyone,
        [MasterService + "RegisterNode"] = [CsiNode, CsiController, Admin],
        [MasterService + "GetNode"] = [CsiController, CsiNode, Operator, Admin, Master],
        // A node plugin renews its own node lease; the operator and the CSI controller read them to decide a takeover.
        [MasterService + "RenewNodeLease"] = [CsiNode],
        [MasterService + "ListNodeLeases"] = [CsiController, Operator, Admin, Master],
        // The namespace: data clients; a master's web console reads it (snapshots).
        [MasterService + "CreateFile"] = DataClients,
        [MasterService + "StatFile"] = [.. DataClients, Master],
        [MasterService + "ListFiles"] = [.. DataClients, Master],
        [MasterService + "RenameFile"] = DataClients,
        [MasterService + "DeleteFile"] = DataClients,
        [MasterService + "OpenForAppend"] = DataClients,
        [MasterService + "AllocateChunk"] = DataClients,
        [MasterService + "CommitChunk"] = DataClients,
        // Only the CSI controller, the operator and the admin CLI create, resize or delete volumes.
        [MasterService + "CreateVolume"] = [CsiController, Operator, Admin],
        [MasterService + "ResizeVolume"] = [CsiController, Operator, Admin],
        [MasterService + "DeleteVolume"] = [CsiController, Operator, Admin],
        [MasterService + "ListVolumes"] = [.. DataClients, Master],
        [MasterService + "StatVolume"] = [.. DataClients, Master],
        [MasterService + "AcquireVolumeLease"] = LeaseHolders,
        [MasterService + "SetVolumeReader"] = LeaseHolders,

        // Appends come from Pangu clients (each fenced by its file's epoch); never from a master or a chunk server.
        [ChunkServerService + "CreateChunk"] = DataClients,
        [ChunkServerService + "Append"] = DataClients,
        [ChunkServerService + "AppendStream"] = DataClients,
        [ChunkServerService + "Sync"] = DataClients,
        [ChunkServerService + "Read"] = [.. DataClients, ChunkServer, Master],
        [ChunkServerService + "GetChunkInfo"] = [.. DataClients, Master, ChunkServer],
        // A writer's takeover seals; so does the master for a writer that vanished.
        [ChunkServerService + "Seal"] = [.. DataClients, Master],
        // Only masters order deletions and rebuild copies.
        [ChunkServerService + "DeleteChunk"] = [Master],
        [ChunkServerService + "CopyChunkFromPeer"] = [Master],
    });

    public IEnumerable<string> Methods => _allowed.Keys;

    /// <summary>The roles allowed to call <paramref name="method"/>; empty for a method the table does not know.</summary>
    public IReadOnlySet<string> AllowedRoles(string method) =>
        _allowed.TryGetValue(method, out var roles) ? roles : FrozenSet<string>.Empty;

    public bool IsAllowed(string method, string role) => _allowed.TryGetValue(method, out var roles) && roles.Contains(role);
}
