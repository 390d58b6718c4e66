using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Health;

/// <summary>What the master says about the cluster it runs.</summary>
public sealed record MasterReport(string? Leader, ulong DegradedChunks, ulong BadReplicas, IReadOnlyList<ChunkServerStatus> ChunkServers,
    ulong UnderReplicatedChunks = 0, ulong RebuildBytesRemaining = 0)
{
    /// <summary>Chunk servers the master declared dead, sorted.</summary>
    public IReadOnlyList<string> DeadChunkServers => ChunkServers.Where(c => c.Dead).Select(c => c.Id).Order(StringComparer.Ordinal).ToList();

    public long CapacityBytes => ChunkServers.Where(c => c.Alive).Sum(c => (long)c.CapacityBytes);
    public long UsedBytes => ChunkServers.Where(c => c.Alive).Sum(c => (long)c.UsedBytes);

    /// <summary>True when no chunk lacks a replica: the only state in which a chunk server may be taken down.</summary>
    public bool FullyReplicated => DegradedChunks == 0 && BadReplicas == 0 && UnderReplicatedChunks == 0;
}

/// <summary>Asks a cluster's master for its status; null when no master answers.</summary>
public interface IMasterStatusSource
{
    Task<MasterReport?> GetAsync(StorageCluster cluster, CancellationToken ct);

    /// <summary>Every master's own Raft state (GetMasterState), by pod ordinal; null where one does not answer.</summary>
    Task<IReadOnlyList<MasterStatus?>> GetMembersAsync(StorageCluster cluster, CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<MasterStatus?>>([]);
}

/// <summary>Reads GetClusterStatus from the master over gRPC (one cached channel per address).</summary>
/// <param name="addressOf">Every master's address of a cluster, comma-separated, in pod ordinal order.</param>
public sealed class GrpcMasterStatusSource(Func<StorageCluster, string> addressOf, ILogger<GrpcMasterStatusSource> logger)
    : IMasterStatusSource, IDisposable
{
    private readonly MasterChannels _channels = new();

    /// <summary>The operator's TLS identity towards a cluster's masters; null = plain HTTP/2.</summary>
    public Func<StorageCluster, FeitianK8s.Core.Security.ComponentTls?> TlsOf { get; init; } = _ => null;

    public GrpcMasterStatusSource(ILogger<GrpcMasterStatusSource> logger)
        : this(Names.MasterAddress, logger)
    {
    }

    public async Task<IReadOnlyList<MasterStatus?>> GetMembersAsync(StorageCluster cluster, CancellationToken ct)
    {
        var addresses = MasterChannels.Split(addressOf(cluster));
        return await Task.WhenAll(addresses.Select(async address =>
        {
            try
            {
                return (MasterStatus?)await _channels.Client(address, TlsOf(cluster)).GetMasterStateAsync(new GetMasterStateRequest(),
                    deadline: DateTime.UtcNow.AddSeconds(3), cancellationToken: ct);
            }
            catch (RpcException e)
            {
                logger.LogDebug("Master {Address} of {Namespace}/{Name} did not report its Raft state: {Status}", address,
                    cluster.Metadata.NamespaceProperty, cluster.Metadata.Name, e.StatusCode);
                return null;
            }
        }));
    }

    public async Task<MasterReport?> GetAsync(StorageCluster cluster, CancellationToken ct)
    {
        var addresses = addressOf(cluster);
        var address = _channels.Current(addresses);
        try
        {
            var status = await _channels.Client(addresses, TlsOf(cluster)).GetClusterStatusAsync(new GetClusterStatusRequest(),
                deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: ct);
            var leader = status.Masters.FirstOrDefault(m => m.Role == "leader")?.Address;
            return new MasterReport(leader, status.DegradedChunks, status.BadReplicas, status.ChunkServers.ToList(),
                status.UnderReplicatedChunks, status.Rebuild?.BytesRemaining ?? 0);
        }
        catch (RpcException e)
        {
            _channels.Observe(addresses, e);
            logger.LogDebug("Master {Address} of {Namespace}/{Name} did not answer: {Status}", address,
                cluster.Metadata.NamespaceProperty, cluster.Metadata.Name, e.StatusCode);
            return null;
        }
    }

    public void Dispose() => _channels.Dispose();
}
