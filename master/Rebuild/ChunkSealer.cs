using FeitianK8s.Core.Pangu;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.MasterLog;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Seals an open chunk whose writer's pipeline is broken (a replica bad or on a dead server), by the seal rule
/// of ARCHITECTURE.md: the seal length is the MINIMUM over the live replicas, which covers every acknowledged
/// byte, since an append is acknowledged only once every replica has it.
/// <para>
/// The minimum only holds if no append lands after it was read, and the writer may still be alive (it can reach
/// a server the master has declared dead). So unless some replica is sealed already (its writer sealed it at
/// the acknowledged length; that length is final and the others are cut to it), the sealer first freezes every
/// live replica by sealing it at its own current length, cutting nothing, and only then takes the minimum of
/// the frozen lengths. A replica frozen longer holds bytes no writer had acknowledged: it is marked bad and
/// replaced. Replicas that did not answer or take the seal are marked bad too.
/// </para>
/// </summary>
public sealed class ChunkSealer(MasterMetadata metadata, GrpcChannelCache channels, ILogger<ChunkSealer> log)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);

    public async Task SealAsync(ulong chunkId, IReadOnlyList<ServerView> replicas, ulong epoch, ulong committedLength, CancellationToken ct)
    {
        var infos = await Task.WhenAll(replicas.Select(async server =>
        {
            try
            {
                var info = await Client(server).GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunkId }, deadline: Deadline, cancellationToken: ct);
                return (Server: server, Info: (ChunkInfo?)info);
            }
            catch (RpcException error)
            {
                log.LogWarning("Sealing chunk {ChunkId}: {Server} did not answer ({Code})", chunkId, server.Id, error.StatusCode);
                return (Server: server, Info: (ChunkInfo?)null);
            }
        })).ConfigureAwait(false);
        var answered = infos.Where(i => i.Info is not null).Select(i => (i.Server, Info: i.Info!)).ToList();
        if (answered.Count == 0)
        {
            log.LogWarning("Cannot seal chunk {ChunkId}: no live replica answers; trying again later", chunkId);
            return;
        }
        if (answered.Min(a => a.Info.Length) < committedLength)
        {
            log.LogError("Not sealing chunk {ChunkId}: live replicas hold {Length} bytes, below the committed {Committed}",
                chunkId, answered.Min(a => a.Info.Length), committedLength);
            return;
        }
        var bad = new List<string>(infos.Where(i => i.Info is null).Select(i => i.Server.Id));
        var sealedOnes = answered.Where(a => a.Info.Sealed).ToList();
        ulong length;
        if (sealedOnes.Count > 0)
        {
            length = sealedOnes.Min(a => a.Info.Length);
            foreach (var (server, info) in answered.Where(a => !(a.Info.Sealed && a.Info.Length == length)))
            {
                if (!await TrySealAsync(server, new SealRequest { ChunkId = chunkId, Epoch = Math.Max(epoch, info.Epoch), Length = length }, ct))
                {
                    bad.Add(server.Id);
                }
            }
        }
        else
        {
            var frozen = new List<(ServerView Server, ulong Length)>();
            foreach (var (server, info) in answered)
            {
                var at = await TrySendSealAsync(server, new SealRequest { ChunkId = chunkId, Epoch = Math.Max(epoch, info.Epoch), AtCurrentLength = true }, ct);
                if (at is { } frozenLength)
                {
                    frozen.Add((server, frozenLength));
                }
                else
                {
                    bad.Add(server.Id);
                }
            }
            if (frozen.Count == 0)
            {
                return;
            }
            length = frozen.Min(f => f.Length);
            foreach (var (server, longer) in frozen.Where(f => f.Length != length))
            {
                log.LogWarning("Chunk {ChunkId}: {Server} froze at {Longer} bytes, past the seal length {Length}; its replica is replaced",
                    chunkId, server.Id, longer, length);
                bad.Add(server.Id);
            }
        }
        if (bad.Count == infos.Length)
        {
            return;
        }
        var result = await metadata.SubmitAsync(new MasterCommand { SealChunk = new SealChunkCommand { ChunkId = chunkId, Length = length } }, ct).ConfigureAwait(false);
        if (!result.IsOk)
        {
            log.LogWarning("Logging the seal of chunk {ChunkId} at {Length} was refused: {Error}", chunkId, length, result.Error!.Message);
            return;
        }
        log.LogInformation("Sealed chunk {ChunkId} (writer's pipeline broken) at {Length} bytes on {Count} replicas", chunkId, length, infos.Length - bad.Count);
        foreach (var serverId in bad)
        {
            await metadata.SubmitAsync(new MasterCommand { ReportBadReplica = new ReportBadReplicaCommand { ChunkId = chunkId, ChunkServerId = serverId } }, ct).ConfigureAwait(false);
        }
    }

    private static DateTime Deadline => DateTime.UtcNow + CallTimeout;

    private ChunkServer.ChunkServerClient Client(ServerView server) => new(channels.Get(server.Address));

    private async Task<bool> TrySealAsync(ServerView server, SealRequest request, CancellationToken ct) =>
        await TrySendSealAsync(server, request, ct) is not null;

    /// <summary>Sends a seal; returns the replica's sealed length, or null when it failed (logged).</summary>
    private async Task<ulong?> TrySendSealAsync(ServerView server, SealRequest request, CancellationToken ct)
    {
        try
        {
            return (await Client(server).SealAsync(request, deadline: Deadline, cancellationToken: ct)).Length;
        }
        catch (RpcException error)
        {
            log.LogWarning("Sealing chunk {ChunkId} on {Server} failed ({Code}: {Detail})", request.ChunkId, server.Id, error.StatusCode, error.Status.Detail);
            return null;
        }
    }
}
