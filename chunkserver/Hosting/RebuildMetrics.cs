using Prometheus;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>Re-replication flow-control metrics of one chunk server: its limits, copies running and waiting, and time spent throttled.</summary>
public sealed class RebuildMetrics
{
    public RebuildMetrics(CollectorRegistry registry)
    {
        var factory = Metrics.WithCustomRegistry(registry);
        BandwidthLimit = factory.CreateGauge("feitian_chunkserver_rebuild_bandwidth_limit_bytes_per_second",
            "Bandwidth all copies from peers share (--rebuild-bandwidth); 0 = unlimited.");
        ConcurrencyLimit = factory.CreateGauge("feitian_chunkserver_rebuild_concurrency_limit",
            "Copies from peers allowed to run at once (--rebuild-concurrency).");
        Active = factory.CreateGauge("feitian_chunkserver_rebuild_copies_active", "Copies from peers running now.");
        Waiting = factory.CreateGauge("feitian_chunkserver_rebuild_copies_waiting", "Copies from peers waiting for a free slot.");
        SlotWaits = factory.CreateCounter("feitian_chunkserver_rebuild_slot_waits_total", "Copies that had to wait for a free slot.");
        SlotWaitSeconds = factory.CreateCounter("feitian_chunkserver_rebuild_slot_wait_seconds_total", "Time copies spent waiting for a free slot.");
        ThrottledBytes = factory.CreateCounter("feitian_chunkserver_rebuild_throttled_bytes_total",
            "Bytes copied from peers that had to wait for the bandwidth budget.");
        ThrottleWaitSeconds = factory.CreateCounter("feitian_chunkserver_rebuild_throttle_wait_seconds_total",
            "Time copies spent waiting for the bandwidth budget.");
    }

    public Gauge BandwidthLimit { get; }

    public Gauge ConcurrencyLimit { get; }

    public Gauge Active { get; }

    public Gauge Waiting { get; }

    public Counter SlotWaits { get; }

    public Counter SlotWaitSeconds { get; }

    public Counter ThrottledBytes { get; }

    public Counter ThrottleWaitSeconds { get; }
}
