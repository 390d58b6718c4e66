using Prometheus;

namespace FeitianK8s.Core.Raf;

/// <summary>Prometheus metrics of one volume (label "volume").</summary>
public sealed class RafMetrics : IDisposable
{
    private static readonly string[] Labels = ["volume"];
    private static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.00005, 2, 18);

    private static readonly Counter ReadBytes = Metrics.CreateCounter("feitian_raf_read_bytes_total", "Bytes read from the volume.", Labels);
    private static readonly Counter WriteBytes = Metrics.CreateCounter("feitian_raf_write_bytes_total", "Bytes written to the volume (writes, trims and zeroes by range).", Labels);
    private static readonly Histogram ReadLatency = Metrics.CreateHistogram("feitian_raf_read_latency_seconds", "Volume read latency.",
        new HistogramConfiguration { LabelNames = Labels, Buckets = LatencyBuckets });
    private static readonly Histogram WriteLatency = Metrics.CreateHistogram("feitian_raf_write_latency_seconds", "Volume write latency until acknowledged.",
        new HistogramConfiguration { LabelNames = Labels, Buckets = LatencyBuckets });
    private static readonly Counter LogAppends = Metrics.CreateCounter("feitian_raf_log_appends_total", "Log appends (group-commit batches).", Labels);
    private static readonly Counter LogAppendBytes = Metrics.CreateCounter("feitian_raf_log_append_bytes_total", "Bytes appended to the log, headers included.", Labels);
    private static readonly Counter LogRecords = Metrics.CreateCounter("feitian_raf_log_records_total", "Records appended to the log.", Labels);
    private static readonly Counter Flushes = Metrics.CreateCounter("feitian_raf_flushes_total", "Flushes of the log (FLUSH and FUA).", Labels);
    private static readonly Counter Errors = Metrics.CreateCounter("feitian_raf_errors_total", "Failed volume operations.", Labels);
    private static readonly Gauge LogBytes = Metrics.CreateGauge("feitian_raf_log_bytes", "Bytes in the volume's log segments.", Labels);
    private static readonly Gauge LiveBytes = Metrics.CreateGauge("feitian_raf_live_bytes", "Bytes the index maps (live data).", Labels);
    private static readonly Gauge Extents = Metrics.CreateGauge("feitian_raf_index_extents", "Extents in the in-memory index.", Labels);
    private static readonly Counter Checkpoints = Metrics.CreateCounter("feitian_raf_checkpoints_total", "Checkpoints written.", Labels);
    private static readonly Counter GcRewrittenBytes = Metrics.CreateCounter("feitian_raf_gc_rewritten_bytes_total", "Live bytes rewritten by GC.", Labels);
    private static readonly Counter GcDeletedSegments = Metrics.CreateCounter("feitian_raf_gc_deleted_segments_total", "Log segments deleted by GC.", Labels);
    private static readonly Gauge RecoverySeconds = Metrics.CreateGauge("feitian_raf_recovery_seconds", "Duration of the last open (checkpoint load and replay).", Labels);
    private static readonly Counter ReplayedRecords = Metrics.CreateCounter("feitian_raf_replayed_records_total", "Log records replayed on open.", Labels);

    private readonly string _volume;

    public RafMetrics(string volume)
    {
        _volume = volume;
        ReadBytesTotal = ReadBytes.WithLabels(volume);
        WriteBytesTotal = WriteBytes.WithLabels(volume);
        ReadSeconds = ReadLatency.WithLabels(volume);
        WriteSeconds = WriteLatency.WithLabels(volume);
        Appends = LogAppends.WithLabels(volume);
        AppendBytes = LogAppendBytes.WithLabels(volume);
        Records = LogRecords.WithLabels(volume);
        FlushesTotal = Flushes.WithLabels(volume);
        ErrorsTotal = Errors.WithLabels(volume);
        Log = LogBytes.WithLabels(volume);
        Live = LiveBytes.WithLabels(volume);
        IndexExtents = Extents.WithLabels(volume);
        CheckpointsTotal = Checkpoints.WithLabels(volume);
        GcRewritten = GcRewrittenBytes.WithLabels(volume);
        GcDeleted = GcDeletedSegments.WithLabels(volume);
        Recovery = RecoverySeconds.WithLabels(volume);
        Replayed = ReplayedRecords.WithLabels(volume);
    }

    public Counter.Child ReadBytesTotal { get; }
    public Counter.Child WriteBytesTotal { get; }
    public Histogram.Child ReadSeconds { get; }
    public Histogram.Child WriteSeconds { get; }
    public Counter.Child Appends { get; }
    public Counter.Child AppendBytes { get; }
    public Counter.Child Records { get; }
    public Counter.Child FlushesTotal { get; }
    public Counter.Child ErrorsTotal { get; }
    public Gauge.Child Log { get; }
    public Gauge.Child Live { get; }
    public Gauge.Child IndexExtents { get; }
    public Counter.Child CheckpointsTotal { get; }
    public Counter.Child GcRewritten { get; }
    public Counter.Child GcDeleted { get; }
    public Gauge.Child Recovery { get; }
    public Counter.Child Replayed { get; }

    /// <summary>Publishes the index and log sizes; call with the volume gate held.</summary>
    public void UpdateSpace(RafVolumeState state)
    {
        Log.Set(state.LogBytes);
        Live.Set(state.Index.TotalLiveBytes);
        IndexExtents.Set(state.Index.Count);
    }

    public void Dispose()
    {
        foreach (var collector in new Collector[] { ReadBytes, WriteBytes, ReadLatency, WriteLatency, LogAppends, LogAppendBytes, LogRecords, Flushes, Errors, LogBytes, LiveBytes, Extents, Checkpoints, GcRewrittenBytes, GcDeletedSegments, RecoverySeconds, ReplayedRecords })
        {
            switch (collector)
            {
                case Counter c: c.RemoveLabelled(_volume); break;
                case Gauge g: g.RemoveLabelled(_volume); break;
                case Histogram h: h.RemoveLabelled(_volume); break;
            }
        }
    }
}
