namespace FeitianK8s.Core.Raf;

public sealed class RafOptions
{
    /// <summary>A log segment is sealed and a new one started once it reaches this size.</summary>
    public long SegmentSizeBytes { get; init; } = 256L << 20;

    /// <summary>Largest data payload of one log record; larger writes become several records.</summary>
    public int MaxRecordDataBytes { get; init; } = 4 << 20;

    /// <summary>Upper bound of one group-commit batch (one log append).</summary>
    public int MaxBatchBytes { get; init; } = 8 << 20;

    /// <summary>
    /// Log appends (group-commit batches) in flight at once; their records are applied to the index and
    /// acknowledged strictly in log order. 1 = one append at a time.
    /// </summary>
    public int MaxAppendsInFlight { get; init; } = 8;

    /// <summary>
    /// A checkpoint is written after this many bytes of log since the last one, or after
    /// <see cref="CheckpointSizeFactor"/> times the size a checkpoint of the index now has, when that is more.
    /// </summary>
    public long CheckpointIntervalBytes { get; init; } = 64L << 20;

    /// <summary>
    /// The log written between periodic checkpoints is at least this many times a checkpoint's size (40 bytes
    /// per index extent), so checkpoints cost at most about 1/factor of the log. Without it a volume fragmented
    /// by small random writes (up to 262,144 extents, 10 MiB, per GiB written in 4 KiB pieces) rewrote its whole
    /// index, behind a log flush, every <see cref="CheckpointIntervalBytes"/>. The log replayed after a crash
    /// stays within the same multiple. 0 = the fixed interval alone.
    /// </summary>
    public int CheckpointSizeFactor { get; init; } = 32;

    /// <summary>Checkpoints kept besides the newest when no GC deleted segments in between.</summary>
    public int CheckpointsToKeep { get; init; } = 2;

    /// <summary>Sealed segments whose live fraction is below this are rewritten by GC.</summary>
    public double GcLiveThreshold { get; init; } = 0.5;

    /// <summary>GC seals a mostly-dead head segment of at least this size early so it can be collected (small volumes never fill a segment).</summary>
    public long GcSealHeadMinBytes { get; init; } = 16L << 20;

    /// <summary>GC read+rewrite budget in bytes per second; 0 means unlimited.</summary>
    public long GcBandwidthBytesPerSecond { get; init; } = 64L << 20;

    /// <summary>Interval of background GC passes; null disables the background loop (RunGcOnceAsync still works).</summary>
    public TimeSpan? GcInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How often a writable engine looks for snapshot requests (<c>snapshot-requests/NAME</c> in
    /// its volume directory) and answers them; null: never (only <see cref="RafVolume.TakeSnapshotAsync"/>).
    /// </summary>
    public TimeSpan? SnapshotRequestInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Open readers of sealed segments kept in the cache.</summary>
    public int ReaderCacheSize { get; init; } = 16;

    /// <summary>Lease holder name given to the catalog (node / process identity).</summary>
    public string Holder { get; init; } = Environment.MachineName;

    public void Validate()
    {
        if (SegmentSizeBytes <= 0 || MaxRecordDataBytes <= 0 || MaxRecordDataBytes > RafRecordHeader.MaxDataLength || MaxBatchBytes <= 0 || CheckpointIntervalBytes <= 0 || CheckpointSizeFactor < 0
            || CheckpointsToKeep < 1 || GcLiveThreshold is < 0 or > 1 || GcBandwidthBytesPerSecond < 0 || ReaderCacheSize < 1 || GcSealHeadMinBytes < 0
            || GcInterval is { } interval && interval <= TimeSpan.Zero || SnapshotRequestInterval is { } poll && poll <= TimeSpan.Zero)
        {
            throw new ArgumentException($"invalid RAF options: segment {SegmentSizeBytes}, record {MaxRecordDataBytes}, batch {MaxBatchBytes}, checkpoint interval {CheckpointIntervalBytes}, checkpoint size factor {CheckpointSizeFactor}, keep {CheckpointsToKeep}, GC threshold {GcLiveThreshold}, GC bandwidth {GcBandwidthBytesPerSecond}, reader cache {ReaderCacheSize}, GC interval {GcInterval}");
        }
    }
}
