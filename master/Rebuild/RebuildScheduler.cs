using System.Collections.Concurrent;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Master.Cluster;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.MasterLog;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Rebuild;

public sealed record RebuildSettings(TimeSpan DeadAfter, int MaxRebuilds, TimeSpan Interval, TimeSpan MinCopyTimeout, long MinCopyBytesPerSecond)
{
    public static RebuildSettings Default(TimeSpan deadAfter, int maxRebuilds) =>
        new(deadAfter, maxRebuilds, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60), 1 << 20);
}

/// <summary>
/// The thin loop around <see cref="RebuildPlanner"/>: once per interval, while this master leads, it reads the
/// state and liveness, plans, and starts the work. A copy is an RPC to the target chunk server
/// (CopyChunkFromPeer: the target pulls from the source under its own rebuild budget, checks every piece's
/// CRC32C and rebuilds every block's CRC); only when the target answers with the sealed length is the new
/// replica logged (AddReplica). A copy that fails or passes its deadline leaves the in-flight set and is planned
/// again on the next pass (HDFS-style pending-copy timeout). Removals and seals go through the command log.
/// </summary>
public sealed class RebuildScheduler : IAsyncDisposable
{
    private readonly MasterMetadata _metadata;
    private readonly ChunkServerLiveness _liveness;
    private readonly DeadServerDetector _dead;
    private readonly GrpcChannelCache _channels;
    private readonly ChunkSealer _sealer;
    private readonly RebuildSettings _settings;
    private readonly Func<bool> _isLeader;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<(ulong ChunkId, string Target), InFlightCopy> _inFlight = new();
    private readonly ConcurrentDictionary<ulong, bool> _sealing = new();
    // Targets whose last copy failed, until when they take no copies (a full or lost disk must not attract every copy).
    private readonly ConcurrentDictionary<string, DateTimeOffset> _failedTargets = new(StringComparer.Ordinal);
    private static readonly TimeSpan FailedTargetPause = TimeSpan.FromSeconds(30);
    private readonly HashSet<string> _declaredDead = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private bool _wasHealthy = true;

    public RebuildScheduler(MasterMetadata metadata, ChunkServerLiveness liveness, DeadServerDetector dead, GrpcChannelCache channels,
        RebuildSettings settings, Func<bool> isLeader, RebuildProgress progress, ILoggerFactory loggers)
    {
        _metadata = metadata;
        _liveness = liveness;
        _dead = dead;
        _channels = channels;
        _settings = settings;
        _isLeader = isLeader;
        Progress = progress;
        _log = loggers.CreateLogger<RebuildScheduler>();
        _sealer = new ChunkSealer(metadata, channels, loggers.CreateLogger<ChunkSealer>());
    }

    public RebuildProgress Progress { get; }

    /// <summary>Raised (on the loop) when a chunk server is declared dead, and when every chunk is fully replicated again.</summary>
    public event Action<string>? ServerDeclaredDead;
    public event Action? RedundancyRestored;

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    private async Task RunAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_settings.Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                if (!_isLeader())
                {
                    continue;
                }
                try
                {
                    await PassAsync(ct).ConfigureAwait(false);
                }
                catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
                {
                    return;
                }
                catch (Exception error) when (error is not OperationCanceledException)
                {
                    _log.LogError(error, "Re-replication pass failed; trying again in {Interval}", _settings.Interval);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>One planning pass; public so tests can drive it without waiting for the timer.</summary>
    public async Task PassAsync(CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow;
        foreach (var (id, until) in _failedTargets)
        {
            if (until <= now)
            {
                _failedTargets.TryRemove(id, out _);
            }
        }
        var avoid = _failedTargets.Keys.ToHashSet(StringComparer.Ordinal);
        var (plan, servers) = _metadata.Read(state =>
        {
            var views = state.ChunkServers.Select(s =>
            {
                var sample = _liveness.Last(s.Id);
                var dead = _dead.IsDead(s.Id);
                return new ServerView(s.Id, s.Node, s.Rack, s.Address, !dead && sample is not null && _liveness.IsAlive(sample), dead,
                    sample?.UsedBytes ?? 0, sample?.CapacityBytes ?? 0, state.ReplicaCountOn(s.Id));
            }).ToList();
            var planned = RebuildPlanner.Plan(state.ChunkViews(), views, _inFlight.Values.ToList(), state.IsDeletionPending, _settings.MaxRebuilds, avoid);
            return (planned, views);
        });
        foreach (var server in servers)
        {
            if (server.Dead && _declaredDead.Add(server.Id))
            {
                _log.LogWarning("Chunk server {Id} (node {Node}, rack {Rack}) declared dead: no heartbeat for {DeadAfter}; its replicas are rebuilt elsewhere",
                    server.Id, server.Node, server.Rack, _dead.DeadAfter);
                ServerDeclaredDead?.Invoke(server.Id);
            }
            else if (!server.Dead && _declaredDead.Remove(server.Id))
            {
                _log.LogInformation("Chunk server {Id} is back after being declared dead; its surplus or stale replicas are reconciled", server.Id);
            }
        }
        Progress.RecordPlan(plan.UnderReplicatedChunks, plan.BytesRemaining, _inFlight.Count + plan.Copies.Count, _declaredDead.Count);
        var healthy = plan.UnderReplicatedChunks == 0 && _inFlight.IsEmpty && plan.Copies.Count == 0;
        if (healthy && !_wasHealthy)
        {
            _log.LogInformation("Redundancy restored: every chunk has its replicas");
            RedundancyRestored?.Invoke();
        }
        _wasHealthy = healthy;

        foreach (var removal in plan.Removals)
        {
            var result = await _metadata.SubmitAsync(new MasterCommand
            {
                RemoveReplica = new RemoveReplicaCommand { ChunkId = removal.ChunkId, ChunkServerId = removal.ChunkServerId },
            }, ct).ConfigureAwait(false);
            if (result.IsOk)
            {
                _log.LogInformation("Removed replica of chunk {ChunkId} on {Server} ({Why}); the server deletes it", removal.ChunkId, removal.ChunkServerId, removal.Why);
            }
            else
            {
                _log.LogWarning("Removing replica of chunk {ChunkId} on {Server} refused: {Error}", removal.ChunkId, removal.ChunkServerId, result.Error!.Message);
            }
        }
        foreach (var seal in plan.Seals)
        {
            if (_sealing.TryAdd(seal.ChunkId, true))
            {
                _ = Task.Run(() => SealAsync(seal.ChunkId, servers, ct), CancellationToken.None);
            }
        }
        foreach (var copy in plan.Copies)
        {
            var flight = new InFlightCopy(copy.ChunkId, copy.Source.Id, copy.Target.Id, copy.Length);
            if (_inFlight.TryAdd((copy.ChunkId, copy.Target.Id), flight))
            {
                _ = Task.Run(() => CopyAsync(copy, ct), CancellationToken.None);
            }
        }
    }

    private async Task SealAsync(ulong chunkId, IReadOnlyList<ServerView> servers, CancellationToken ct)
    {
        try
        {
            var found = _metadata.Read(state => state.FindChunk(chunkId) is { } f
                ? (Replicas: f.Chunk.Replicas.Where(r => !r.Bad).Select(r => r.ChunkServerId).ToList(), f.Epoch, f.Chunk.Length, f.Chunk.Sealed)
                : default);
            if (found.Replicas is null || found.Sealed)
            {
                return;
            }
            var live = servers.Where(s => !s.Dead && found.Replicas.Contains(s.Id)).ToList();
            await _sealer.SealAsync(chunkId, live, found.Epoch, found.Length, ct).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OperationCanceledException)
        {
            _log.LogError(error, "Sealing chunk {ChunkId} failed", chunkId);
        }
        finally
        {
            _sealing.TryRemove(chunkId, out _);
        }
    }

    private async Task CopyAsync(PlannedCopy copy, CancellationToken ct)
    {
        var ok = false;
        // Deadline: the pending-copy timeout. Long enough for the chunk at the slowest acceptable rate.
        var timeout = _settings.MinCopyTimeout + TimeSpan.FromSeconds((double)copy.Length / _settings.MinCopyBytesPerSecond);
        try
        {
            _log.LogInformation("Copying chunk {ChunkId} ({Length} bytes, {Good} good replicas) from {Source} to {Target} (rack {Rack})",
                copy.ChunkId, copy.Length, copy.GoodReplicas, copy.Source.Id, copy.Target.Id, copy.Target.Rack);
            var client = new ChunkServer.ChunkServerClient(_channels.Get(copy.Target.Address));
            var response = await client.CopyChunkFromPeerAsync(new CopyChunkFromPeerRequest
            {
                ChunkId = copy.ChunkId,
                SourceAddress = copy.Source.Address,
                Epoch = copy.Epoch,
                Length = copy.Length,
            }, deadline: DateTime.UtcNow + timeout, cancellationToken: ct).ConfigureAwait(false);
            if (response.Length != copy.Length)
            {
                _log.LogError("Copy of chunk {ChunkId} on {Target} has {Actual} bytes, expected {Length}; not counted", copy.ChunkId, copy.Target.Id, response.Length, copy.Length);
                return;
            }
            var result = await _metadata.SubmitAsync(new MasterCommand
            {
                AddReplica = new AddReplicaCommand { ChunkId = copy.ChunkId, ChunkServerId = copy.Target.Id, Length = copy.Length },
            }, ct).ConfigureAwait(false);
            if (!result.IsOk)
            {
                _log.LogWarning("Recording the copy of chunk {ChunkId} on {Target} was refused: {Error}", copy.ChunkId, copy.Target.Id, result.Error!.Message);
                return;
            }
            ok = true;
            _log.LogInformation("Chunk {ChunkId} copied to {Target}: {Length} bytes, crc32c {Crc:x8}, verified", copy.ChunkId, copy.Target.Id, response.Length, response.Crc32C);
        }
        catch (RpcException error)
        {
            _log.LogWarning("Copy of chunk {ChunkId} from {Source} to {Target} failed ({Code}: {Detail}); it is planned again",
                copy.ChunkId, copy.Source.Id, copy.Target.Id, error.StatusCode, error.Status.Detail);
        }
        catch (Exception error) when (error is not OperationCanceledException)
        {
            _log.LogError(error, "Copy of chunk {ChunkId} to {Target} failed", copy.ChunkId, copy.Target.Id);
        }
        finally
        {
            if (!ok)
            {
                _failedTargets[copy.Target.Id] = DateTimeOffset.UtcNow + FailedTargetPause;
            }
            Progress.RecordCopy(copy.Length, ok);
            _inFlight.TryRemove((copy.ChunkId, copy.Target.Id), out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }
}
