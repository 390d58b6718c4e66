using FeitianK8s.Master.Cluster;
using FeitianK8s.Master.Rebuild;
using FeitianK8s.Master.State;
using Prometheus;

namespace FeitianK8s.Master.Hosting;

/// <summary>Prometheus metrics of one master, in its own registry so several hosts can share a process.</summary>
public sealed class MasterMetrics
{
    private readonly Counter _commands;
    private readonly Histogram _commitSeconds;
    private readonly Gauge _files;
    private readonly Gauge _chunks;
    private readonly Gauge _volumes;
    private readonly Gauge _chunkServers;
    private readonly Gauge _aliveChunkServers;
    private readonly Gauge _degradedChunks;
    private readonly Gauge _badReplicas;
    private readonly Gauge _logIndex;

    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();

    /// <summary>Re-replication gauges and counters, read from the scheduler's progress when scraped.</summary>
    public void AttachRebuild(RebuildScheduler rebuild, DeadServerDetector dead, MasterMetadata metadata)
    {
        var factory = Metrics.WithCustomRegistry(Registry);
        var under = factory.CreateGauge("feitian_master_under_replicated_chunks", "Chunks with fewer good replicas than their file wants.");
        var remaining = factory.CreateGauge("feitian_master_rebuild_remaining_bytes", "Bytes of replicas still to copy.");
        var rate = factory.CreateGauge("feitian_master_rebuild_rate_bytes_per_second", "Re-replication copy rate over the last 30 s.");
        var active = factory.CreateGauge("feitian_master_rebuild_copies_active", "Re-replication copies running now.");
        var copied = factory.CreateCounter("feitian_master_rebuild_copied_bytes_total", "Bytes copied by re-replication since the master started.");
        var completed = factory.CreateCounter("feitian_master_rebuild_copies_completed_total", "Verified copies recorded since the master started.");
        var failed = factory.CreateCounter("feitian_master_rebuild_copies_failed_total", "Copies that failed or timed out (and were planned again).");
        var deadServers = factory.CreateGauge("feitian_master_chunk_servers_dead", "Chunk servers without a heartbeat for --dead-after.");
        var deadAfter = factory.CreateGauge("feitian_master_dead_after_seconds", "The --dead-after setting.");
        deadAfter.Set(dead.DeadAfter.TotalSeconds);
        Registry.AddBeforeCollectCallback(() =>
        {
            var p = rebuild.Progress;
            under.Set(p.UnderReplicatedChunks);
            remaining.Set(p.BytesRemaining);
            rate.Set(p.BytesPerSecond);
            active.Set(p.CopiesActive);
            copied.IncTo(p.BytesCopied);
            completed.IncTo(p.CopiesCompleted);
            failed.IncTo(p.CopiesFailed);
            try
            {
                deadServers.Set(metadata.Read(state => state.ChunkServers.Count(s => dead.IsDead(s.Id))));
            }
            catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
            {
            }
        });
    }

    public MasterMetrics()
    {
        var factory = Metrics.WithCustomRegistry(Registry);
        _commands = factory.CreateCounter("feitian_master_commands_total", "Commands proposed to the state machine.", "kind", "result");
        _commitSeconds = factory.CreateHistogram("feitian_master_log_commit_seconds", "Time to apply and fsync one batch of commands.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });
        _files = factory.CreateGauge("feitian_master_files", "Files in the namespace.");
        _chunks = factory.CreateGauge("feitian_master_chunks", "Chunks referenced by files.");
        _volumes = factory.CreateGauge("feitian_master_volumes", "RAF volumes.");
        _chunkServers = factory.CreateGauge("feitian_master_chunk_servers", "Registered chunk servers.");
        _aliveChunkServers = factory.CreateGauge("feitian_master_chunk_servers_alive", "Chunk servers that heartbeat within the timeout.");
        _degradedChunks = factory.CreateGauge("feitian_master_degraded_chunks", "Chunks with fewer good replicas or racks than wanted.");
        _badReplicas = factory.CreateGauge("feitian_master_bad_replicas", "Replicas reported bad.");
        _logIndex = factory.CreateGauge("feitian_master_log_index", "Index of the last applied log entry.");
    }

    /// <summary>Raft gauges of this master: whether it leads, its term, commit and applied index (commit lag = leader's commit − applied).</summary>
    private void AttachRaft(MasterMetadata metadata)
    {
        var factory = Metrics.WithCustomRegistry(Registry);
        var leader = factory.CreateGauge("feitian_master_is_leader", "1 while this master is the Raft leader, else 0.");
        var term = factory.CreateGauge("feitian_master_raft_term", "Raft term this master is in.");
        var commit = factory.CreateGauge("feitian_master_raft_commit_index", "Index of the last Raft entry this master knows committed.");
        var applied = factory.CreateGauge("feitian_master_raft_applied_index", "Index of the last Raft entry applied to this master's state.");
        Registry.AddBeforeCollectCallback(() =>
        {
            try
            {
                var state = metadata.State();
                leader.Set(state.Role == "leader" ? 1 : 0);
                term.Set(state.Term);
                commit.Set(state.CommitIndex);
                applied.Set(state.AppliedIndex);
            }
            catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
            {
            }
        });
    }

    public void Attach(MasterMetadata metadata, ChunkServerLiveness liveness)
    {
        AttachRaft(metadata);
        metadata.CommandApplied += (kind, ok) => _commands.WithLabels(kind.ToString(), ok ? "ok" : "refused").Inc();
        metadata.BatchCommitted += (elapsed, _) => _commitSeconds.Observe(elapsed.TotalSeconds);
        Registry.AddBeforeCollectCallback(() =>
        {
            try
            {
                metadata.ReadLocal(state =>
                {
                    _files.Set(state.FileCount);
                    _chunks.Set(state.ChunkCount);
                    _volumes.Set(state.VolumeCount);
                    var servers = state.ChunkServers.ToList();
                    _chunkServers.Set(servers.Count);
                    _aliveChunkServers.Set(servers.Count(s => liveness.IsAlive(s.Id)));
                    _degradedChunks.Set(state.CountDegradedChunks());
                    _badReplicas.Set(state.CountBadReplicas());
                    _logIndex.Set(state.LastIndex);
                    return 0;
                });
            }
            catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
            {
                // A stopped master keeps its last values.
            }
        });
    }

}
