using FeitianK8s.ChunkServer.Storage;
using Prometheus;

namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>
/// Prometheus metrics of one chunk server, in its own registry so several servers can live in one
/// process (tests, <c>feitian up</c> in-process). Gauges are read from the store at scrape time.
/// </summary>
public sealed class ChunkServerMetrics
{
    public ChunkServerMetrics(ChunkStore store, Func<long> capacityBytes)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        Requests = factory.CreateCounter("feitian_chunkserver_requests_total", "gRPC calls handled, by method and outcome reason.",
            new CounterConfiguration { LabelNames = ["method", "reason"] });
        RequestDuration = factory.CreateHistogram("feitian_chunkserver_request_duration_seconds", "gRPC call latency by method.",
            new HistogramConfiguration { LabelNames = ["method"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 18) });
        AppendedBytes = factory.CreateCounter("feitian_chunkserver_appended_bytes_total", "Bytes acknowledged by appends.");
        ReadBytes = factory.CreateCounter("feitian_chunkserver_read_bytes_total", "Bytes returned by reads.");
        CopiedBytes = factory.CreateCounter("feitian_chunkserver_copied_bytes_total", "Bytes copied in from peers.");
        Heartbeats = factory.CreateCounter("feitian_chunkserver_heartbeats_total", "Heartbeats sent to the master, by outcome.",
            new CounterConfiguration { LabelNames = ["outcome"] });
        Registrations = factory.CreateCounter("feitian_chunkserver_registrations_total", "Registrations with the master, by outcome.",
            new CounterConfiguration { LabelNames = ["outcome"] });
        var chunks = factory.CreateGauge("feitian_chunkserver_chunks_count", "Chunks held.");
        var used = factory.CreateGauge("feitian_chunkserver_used_bytes", "Bytes held by chunk files.");
        var capacity = factory.CreateGauge("feitian_chunkserver_capacity_bytes", "Capacity reported to the master.");
        Registry.AddBeforeCollectCallback(() =>
        {
            chunks.Set(store.Count);
            used.Set(store.UsedBytes);
            capacity.Set(capacityBytes());
        });
    }

    public CollectorRegistry Registry { get; }

    public Counter Requests { get; }

    public Histogram RequestDuration { get; }

    public Counter AppendedBytes { get; }

    public Counter ReadBytes { get; }

    public Counter CopiedBytes { get; }

    public Counter Heartbeats { get; }

    public Counter Registrations { get; }
}
