using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using MasterClient = FeitianK8s.Proto.Master.Master.MasterClient;

namespace FeitianK8s.ChunkServer.Registration;

/// <summary>What the chunk server tells the master about itself.</summary>
public sealed record ChunkServerIdentityInfo(string Id, string Node, string Rack, string Address);

/// <summary>
/// Keeps the master informed: registers (identity, full inventory, capacity) with backoff until the
/// master answers, then heartbeats every interval. Executes the deletions the master asks for and
/// acknowledges them in the next heartbeat's deleted_chunks; re-registers when the master says it
/// does not know this server, and after a failed heartbeat (the master may have restarted or a new
/// leader taken over: a fresh registration gives it this server's full inventory at once). The
/// channel reconnects within a second (<see cref="FeitianK8s.Core.Common.GrpcChannels"/>), so a
/// restarted master hears from every chunk server within about a second of serving again.
/// </summary>
public sealed class MasterReporter(
    MasterClient master,
    ChunkServerIdentityInfo identity,
    ChunkStore store,
    Func<long> capacityBytes,
    ChunkServerMetrics metrics,
    TimeSpan defaultInterval,
    TimeSpan maxBackoff,
    ILogger<MasterReporter> log,
    Func<string, MasterClient>? clientFor = null,
    IReadOnlyList<string>? masters = null)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private readonly HashSet<ulong> _deletedSinceLastHeartbeat = [];
    private volatile bool _registered;
    private MasterClient _master = master;
    private int _masterIndex;

    public bool Registered => _registered;

    /// <summary>Progress of the scrubber, sent with every heartbeat (null when scrubbing is off).</summary>
    public Func<ScrubProgress?> Scrub { get; init; } = () => null;

    /// <summary>The adaptive rebuild share, sent with every heartbeat.</summary>
    public Replication.AdaptiveRebuildShare? RebuildShare { get; init; }

    public async Task RunAsync(CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var interval = await RegisterAsync(ct).ConfigureAwait(false);
                await HeartbeatUntilUnknownAsync(interval, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task<TimeSpan> RegisterAsync(CancellationToken ct)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        for (var attempt = 1; ; attempt++)
        {
            var request = new RegisterChunkServerRequest
            {
                Identity = new ChunkServerIdentity { Id = identity.Id, Node = identity.Node, Rack = identity.Rack, Address = identity.Address },
                CapacityBytes = (ulong)capacityBytes(),
                UsedBytes = (ulong)store.UsedBytes,
            };
            request.Chunks.AddRange(store.Inventory().Select(c => new ChunkReport
            {
                ChunkId = c.Id, Length = (ulong)c.Length, Sealed = c.Sealed, Epoch = c.Epoch,
            }));
            try
            {
                var response = await _master.RegisterChunkServerAsync(request, deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct)
                    .ResponseAsync.ConfigureAwait(false);
                metrics.Registrations.WithLabels("ok").Inc();
                _registered = true;
                log.LogInformation("Registered {Id} with the master ({Chunks} chunks, {Orphans} orphans to delete)",
                    identity.Id, request.Chunks.Count, response.OrphanChunks.Count);
                foreach (var orphan in response.OrphanChunks)
                {
                    await DeleteAsync(orphan, "orphan").ConfigureAwait(false);
                }
                return response.HeartbeatIntervalMs > 0 ? TimeSpan.FromMilliseconds(response.HeartbeatIntervalMs) : defaultInterval;
            }
            catch (RpcException error) when (!ct.IsCancellationRequested)
            {
                metrics.Registrations.WithLabels("failed").Inc();
                if (FollowLeader(error))
                {
                    continue;
                }
                log.Log(attempt == 1 ? LogLevel.Warning : LogLevel.Debug,
                    "Registration attempt {Attempt} with the master failed ({Code}: {Detail}); retrying in {Backoff}",
                    attempt, error.StatusCode, error.Status.Detail, backoff);
                await Task.Delay(backoff + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 50)), ct).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, maxBackoff.Ticks));
            }
        }
    }

    private async Task HeartbeatUntilUnknownAsync(TimeSpan interval, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            ulong[] deleted;
            lock (_deletedSinceLastHeartbeat)
            {
                deleted = [.. _deletedSinceLastHeartbeat];
            }
            var request = new HeartbeatRequest
            {
                Id = identity.Id,
                CapacityBytes = (ulong)capacityBytes(),
                UsedBytes = (ulong)store.UsedBytes,
                ChunkCount = (ulong)store.Count,
                Node = identity.Node,
                Rack = identity.Rack,
                Address = identity.Address,
            };
            request.DeletedChunks.AddRange(deleted);
            request.LostChunks.AddRange(store.CheckDataDirectories());
            request.Scrub = Scrub();
            if (RebuildShare is { } share)
            {
                request.RebuildShare = new RebuildShare
                {
                    Share = share.Share,
                    ForegroundLatencySeconds = share.ForegroundLatencySeconds,
                    BaselineLatencySeconds = share.BaselineLatencySeconds,
                };
            }
            try
            {
                var response = await _master.HeartbeatAsync(request, deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct)
                    .ResponseAsync.ConfigureAwait(false);
                metrics.Heartbeats.WithLabels("ok").Inc();
                lock (_deletedSinceLastHeartbeat)
                {
                    _deletedSinceLastHeartbeat.ExceptWith(deleted);
                }
                if (!response.Known)
                {
                    _registered = false;
                    log.LogWarning("The master does not know {Id}; registering again", identity.Id);
                    return;
                }
                foreach (var id in response.DeleteChunks)
                {
                    await DeleteAsync(id, "asked by the master").ConfigureAwait(false);
                }
            }
            catch (RpcException error) when (!ct.IsCancellationRequested)
            {
                metrics.Heartbeats.WithLabels("failed").Inc();
                log.LogWarning("Heartbeat to the master failed ({Code}: {Detail}); registering again", error.StatusCode, error.Status.Detail);
                FollowLeader(error);
                return;
            }
            await Task.Delay(interval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A master that is not the leader names the leader (trailer feitian-leader): report there from now on.</summary>
    private bool FollowLeader(RpcException error)
    {
        if (clientFor is null)
        {
            return false;
        }
        if (!FeitianStatus.HasReason(error, ErrorReasons.NotLeader) || FeitianStatus.LeaderOf(error) is not { } leader)
        {
            // No leader named (a master down, or an election): try the next master of the group.
            if (masters is { Count: > 1 } && error.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
            {
                _masterIndex = (_masterIndex + 1) % masters.Count;
                _master = clientFor(masters[_masterIndex]);
            }
            return false;
        }
        log.LogInformation("The master is not the leader; reporting to leader {Leader}", leader);
        _master = clientFor(leader);
        return true;
    }

    /// <summary>Deletes a chunk for the master; a chunk that is already gone counts as deleted.</summary>
    private async Task DeleteAsync(ulong chunkId, string why)
    {
        try
        {
            await store.DeleteAsync(chunkId).ConfigureAwait(false);
            log.LogInformation("Deleted chunk {ChunkId} ({Why})", chunkId, why);
        }
        catch (ChunkStoreException error) when (error.Error == ChunkError.NotFound)
        {
            store.ForgetLost(chunkId);
        }
        catch (Exception error) when (error is ChunkStoreException or IOException)
        {
            log.LogError(error, "Could not delete chunk {ChunkId} ({Why}); the master will ask again", chunkId, why);
            return;
        }
        lock (_deletedSinceLastHeartbeat)
        {
            _deletedSinceLastHeartbeat.Add(chunkId);
        }
    }
}
