using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Keeps this node's presence lease with the master (<c>--node-lease-seconds</c>): renews it every
/// third of the lease. A node whose lease expired may lose its volumes to another node (the
/// controller grants the new node a new epoch, which fences this one on every chunk server); the
/// operator also marks a node out of service when its lease expired and Kubernetes reports it NotReady.
/// </summary>
public sealed class NodeLeaseRenewer(CsiDriverOptions options, MasterConnection master, ILogger<NodeLeaseRenewer> logger) : IAsyncDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private Task _loop = Task.CompletedTask;

    public TimeSpan Lease => TimeSpan.FromSeconds(options.NodeLeaseSeconds);
    public TimeSpan Interval => Lease / 3;

    /// <summary>The master's answer to the last renewal that succeeded (null before the first).</summary>
    public NodeLeaseStatus? Last { get; private set; }

    public void Start()
    {
        if (options.NodeLeaseSeconds <= 0)
        {
            logger.LogInformation("Node {Node} keeps no node lease (--node-lease-seconds 0): its volumes are never taken over by another node", options.NodeId);
            return;
        }
        _loop = Task.Run(RunAsync, CancellationToken.None);
    }

    private async Task RunAsync()
    {
        var failing = false;
        while (!_stopping.IsCancellationRequested)
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            attempt.CancelAfter(Interval);
            try
            {
                Last = await master.CallAsync("renew node lease",
                    (c, o) => c.RenewNodeLeaseAsync(new RenewNodeLeaseRequest { Id = options.NodeId, Rack = options.Rack, LeaseSeconds = (uint)options.NodeLeaseSeconds }, o).ResponseAsync,
                    attempt.Token);
                if (failing)
                {
                    logger.LogInformation("Node {Node}: node lease renewed again ({State})", options.NodeId, Last.State);
                    failing = false;
                }
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Whatever failed, the loop goes on: a node that stops renewing loses its volumes.
                if (e is not (RpcException or PanguException or OperationCanceledException))
                {
                    logger.LogError(e, "Node {Node}: node lease renewal failed unexpectedly", options.NodeId);
                }
                if (!failing)
                {
                    logger.LogWarning("Node {Node}: node lease renewal failed ({Error}); retrying every {Interval}. After {Lease} without one, this node's volumes may move to another node",
                        options.NodeId, e.Message, Interval, Lease);
                }
                failing = true;
            }
            try
            {
                await Task.Delay(Interval, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _loop;
        _stopping.Dispose();
    }
}
