using FeitianK8s.Core.Pangu;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.MasterLog;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Rebuild;

/// <summary>
/// Seals an open chunk whose writer is gone (the seal rule of ARCHITECTURE.md, as in the client's takeover):
/// asks every replica not known bad or dead for its length, seals those that answer at the MINIMUM (which
/// covers every acknowledged byte, since an append is acknowledged only once on every replica) with the file's
/// current epoch, logs the seal, and marks replicas that did not take it bad so they are replaced.
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
                var client = new ChunkServer.ChunkServerClient(channels.Get(server.Address));
                var info = await client.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunkId }, deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct);
                return (Server: server, Info: (ChunkInfo?)info);
            }
            catch (RpcException error)
            {
                log.LogWarning("Sealing chunk {ChunkId}: {Server} did not answer ({Code})", chunkId, server.Id, error.StatusCode);
                return (Server: server, Info: (ChunkInfo?)null);
            }
        })).ConfigureAwait(false);
        var answered = infos.Where(i => i.Info is not null).ToList();
        if (answered.Count == 0)
        {
            log.LogWarning("Cannot seal chunk {ChunkId}: no live replica answers; trying again later", chunkId);
            return;
        }
        var sealedOnes = answered.Where(a => a.Info!.Sealed).ToList();
        var length = (sealedOnes.Count > 0 ? sealedOnes : answered).Min(a => a.Info!.Length);
        if (length < committedLength)
        {
            log.LogError("Not sealing chunk {ChunkId}: live replicas agree on {Length} bytes, below the committed {Committed}", chunkId, length, committedLength);
            return;
        }
        var bad = new List<string>(infos.Where(i => i.Info is null).Select(i => i.Server.Id));
        foreach (var (server, info) in answered)
        {
            if (info!.Sealed && info.Length == length)
            {
                continue;
            }
            try
            {
                var client = new ChunkServer.ChunkServerClient(channels.Get(server.Address));
                await client.SealAsync(new SealRequest { ChunkId = chunkId, Epoch = Math.Max(epoch, info.Epoch), Length = length },
                    deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct);
            }
            catch (RpcException error)
            {
                log.LogWarning("Sealing chunk {ChunkId} at {Length} on {Server} failed ({Code}: {Detail})", chunkId, length, server.Id, error.StatusCode, error.Status.Detail);
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
        log.LogInformation("Sealed chunk {ChunkId} (writer gone) at {Length} bytes on {Count} replicas", chunkId, length, answered.Count - bad.Count(b => answered.Any(a => a.Server.Id == b)));
        foreach (var serverId in bad)
        {
            await metadata.SubmitAsync(new MasterCommand { ReportBadReplica = new ReportBadReplicaCommand { ChunkId = chunkId, ChunkServerId = serverId } }, ct).ConfigureAwait(false);
        }
    }
}
