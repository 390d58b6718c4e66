using FeitianK8s.Master.Cluster;
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

    public void Attach(MasterMetadata metadata, ChunkServerLiveness liveness)
    {
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
