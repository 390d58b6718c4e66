using FeitianK8s.ChunkServer.Replication;
using FeitianK8s.ChunkServer.Scrub;
using FeitianK8s.ChunkServer.Storage;
using Prometheus;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>Scrubber progress, the adaptive rebuild share and lost chunks, read when /metrics is scraped.</summary>
public static class SelfHealingMetrics
{
    public static void Attach(CollectorRegistry registry, Func<Scrubber?> scrubber, AdaptiveRebuildShare share, ChunkStore store)
    {
        var factory = Metrics.WithCustomRegistry(registry);
        var verified = factory.CreateCounter("feitian_chunkserver_scrub_verified_bytes_total", "Bytes the scrubber read and verified (all passes).");
        var bad = factory.CreateCounter("feitian_chunkserver_scrub_bad_found_total", "Corrupt chunks the scrubber found and reported.");
        var passes = factory.CreateCounter("feitian_chunkserver_scrub_passes_total", "Completed scrub passes.");
        var lastCompleted = factory.CreateGauge("feitian_chunkserver_scrub_last_completed_timestamp_seconds", "Unix time the last scrub pass completed (0 = never).");
        var shareGauge = factory.CreateGauge("feitian_chunkserver_rebuild_share_ratio", "Share of the rebuild budget granted now by the adaptive rule (0..1].");
        var foreground = factory.CreateGauge("feitian_chunkserver_foreground_latency_seconds", "Fast EWMA of foreground append/read latency.");
        var baseline = factory.CreateGauge("feitian_chunkserver_foreground_baseline_latency_seconds", "Slow EWMA baseline of foreground latency.");
        var lost = factory.CreateGauge("feitian_chunkserver_lost_chunks", "Chunks lost with a data directory that went away.");
        registry.AddBeforeCollectCallback(() =>
        {
            if (scrubber() is { } s)
            {
                var state = s.State;
                verified.IncTo(state.BytesVerified);
                bad.IncTo(state.BadFound);
                passes.IncTo(state.PassesCompleted);
                lastCompleted.Set(state.LastCompletedUnixMs / 1000.0);
            }
            shareGauge.Set(share.Share);
            foreground.Set(share.ForegroundLatencySeconds);
            baseline.Set(share.BaselineLatencySeconds);
            lost.Set(store.LostCount);
        });
    }
}
