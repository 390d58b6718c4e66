using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;

namespace FeitianK8s.Core.Pangu;

/// <summary>The answer of one replica to a fanned-out call: a value or the error it gave.</summary>
public sealed record ReplicaResult<T>(PanguReplica Replica, T? Value, RpcException? Error)
{
    public bool Ok => Error is null;
}

/// <summary>Sends one call to every replica of a chunk in parallel and collects each answer.</summary>
public sealed class ReplicaFanOut(GrpcChannelCache channels, PanguClientOptions options)
{
    public async Task<IReadOnlyList<ReplicaResult<T>>> CallAsync<T>(
        IReadOnlyList<PanguReplica> replicas,
        Func<ChunkServer.ChunkServerClient, CallOptions, Task<T>> call,
        CancellationToken ct)
    {
        var tasks = replicas.Select(async r =>
        {
            try
            {
                var client = new ChunkServer.ChunkServerClient(channels.Get(r.Address));
                var value = await call(client, new CallOptions(deadline: DateTime.UtcNow + options.ChunkServerTimeout, cancellationToken: ct));
                return new ReplicaResult<T>(r, value, null);
            }
            catch (RpcException e)
            {
                return new ReplicaResult<T>(r, default, e);
            }
        }).ToArray();
        var results = await Task.WhenAll(tasks);
        ct.ThrowIfCancellationRequested();
        return results;
    }
}
