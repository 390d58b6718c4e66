using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Failover;

/// <summary>Node leases of a cluster as its master's leader judges them; null when no master answers.</summary>
public interface INodeLeaseSource
{
    Task<IReadOnlyList<NodeLeaseStatus>?> ListAsync(StorageCluster cluster, CancellationToken ct);
}

/// <summary>ListNodeLeases over gRPC (answered by the leader only: a follower's refusal moves the call to the leader next time).</summary>
public sealed class GrpcNodeLeaseSource(Func<StorageCluster, string> addressOf, ILogger<GrpcNodeLeaseSource> logger) : INodeLeaseSource, IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);
    private readonly MasterChannels _channels = new();

    public GrpcNodeLeaseSource(ILogger<GrpcNodeLeaseSource> logger)
        : this(Names.MasterAddress, logger)
    {
    }

    /// <summary>The operator's certificate for a cluster (mutual TLS), null for plain gRPC.</summary>
    public Func<StorageCluster, FeitianK8s.Core.Security.ComponentTls?> TlsOf { get; init; } = _ => null;

    public async Task<IReadOnlyList<NodeLeaseStatus>?> ListAsync(StorageCluster cluster, CancellationToken ct)
    {
        var addresses = addressOf(cluster);
        // Each master once at most: a follower names the leader, a dead master passes the turn on.
        for (var attempt = 0; attempt < Math.Max(1, MasterChannels.Split(addresses).Count); attempt++)
        {
            try
            {
                var response = await _channels.Client(addresses, TlsOf(cluster)).ListNodeLeasesAsync(new ListNodeLeasesRequest(),
                    new CallOptions(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct));
                return response.Leases;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                logger.LogDebug("Master {Address} of {Namespace}/{Name} did not list node leases: {Status}", _channels.Current(addresses),
                    cluster.Metadata.NamespaceProperty, cluster.Metadata.Name, e.StatusCode);
                _channels.Observe(addresses, e);
            }
        }
        return null;
    }

    public void Dispose() => _channels.Dispose();
}
