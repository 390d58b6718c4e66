using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Announces this node plugin's node id (and rack) to the master, which the controller
/// asks before publishing a volume to a node: a node nobody registered is NOT_FOUND.
/// The first attempt is part of start-up; if the master does not answer, attempts go on
/// in the background until one succeeds or the plugin stops.
/// </summary>
public sealed class NodeRegistration(CsiDriverOptions options, MasterConnection master, ILogger<NodeRegistration> logger) : IAsyncDisposable
{
    private static readonly TimeSpan FirstAttemptTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(5);

    private readonly CancellationTokenSource _stopping = new();
    private Task _retries = Task.CompletedTask;

    public async Task StartAsync(CancellationToken ct)
    {
        using var first = CancellationTokenSource.CreateLinkedTokenSource(ct);
        first.CancelAfter(FirstAttemptTimeout);
        if (!await TryRegisterAsync(first.Token))
        {
            _retries = Task.Run(RetryUntilRegisteredAsync, CancellationToken.None);
        }
    }

    private async Task RetryUntilRegisteredAsync()
    {
        try
        {
            while (!await TryRegisterAsync(_stopping.Token))
            {
                await Task.Delay(RetryInterval, _stopping.Token);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<bool> TryRegisterAsync(CancellationToken ct)
    {
        try
        {
            await master.CallAsync("register node",
                (c, o) => c.RegisterNodeAsync(new RegisterNodeRequest { Id = options.NodeId, Rack = options.Rack, LeaseSeconds = (uint)options.NodeLeaseSeconds }, o).ResponseAsync, ct);
            logger.LogInformation("Node {Node} registered with the master (rack {Rack})", options.NodeId, options.Rack);
            return true;
        }
        catch (Exception e) when (e is RpcException or PanguException or OperationCanceledException && !_stopping.IsCancellationRequested)
        {
            logger.LogWarning("Node {Node}: registration with the master failed, retrying in {Interval}: {Error}", options.NodeId, RetryInterval, e.Message);
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _retries;
        _stopping.Dispose();
    }
}
