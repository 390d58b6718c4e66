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
    public PanguClientOptions Options => options;

    public ChunkServer.ChunkServerClient ClientFor(PanguReplica replica) => new(channels.Get(replica.Address));

    /// <summary>A new AppendStream transport to <paramref name="replica"/>: the framed protocol, or the gRPC call.</summary>
    internal IAppendStreamTransport AppendTransportFor(PanguReplica replica, bool framed) => framed
        ? new FramedAppendStreamTransport(replica.Address, channels.Tls, channels.MaxMessageBytes)
        : new GrpcAppendStreamTransport(ClientFor(replica));

    /// <summary>Runs <paramref name="call"/> (given the replica's index) for every replica in parallel and collects each answer.</summary>
    public static async Task<IReadOnlyList<ReplicaResult<T>>> CollectAsync<T>(IReadOnlyList<PanguReplica> replicas, Func<int, Task<T>> call)
    {
        var tasks = new Task<ReplicaResult<T>>[replicas.Count];
        for (var i = 0; i < replicas.Count; i++)
        {
            tasks[i] = OneAsync(replicas[i], i, call);
        }
        return await Task.WhenAll(tasks).ConfigureAwait(false);

        static async Task<ReplicaResult<T>> OneAsync(PanguReplica replica, int index, Func<int, Task<T>> call)
        {
            try
            {
                return new ReplicaResult<T>(replica, await call(index).ConfigureAwait(false), null);
            }
            catch (RpcException e)
            {
                return new ReplicaResult<T>(replica, default, e);
            }
        }
    }

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
