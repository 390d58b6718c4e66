using System.Diagnostics;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// A RAF volume: a block device with random writes over append-only Pangu files.
/// Every write is a record appended to the volume's log; an in-memory extent index
/// maps volume ranges to log locations; checkpoints of the index plus the log tail
/// rebuild it on open. One engine per volume: opening takes the volume lease and fences
/// the previous engine, whose later writes fail with <see cref="BlockErrorKind.Fenced"/>.
/// A read-only engine (<see cref="OpenReadOnlyAsync"/>) takes no lease and fences nobody:
/// it serves the volume as its log stood when it was opened and refuses every write.
/// </summary>
public sealed class RafVolume : IBlockDevice, IAsyncDisposable
{
    private readonly IVolumeCatalog _catalog;
    private readonly ILogger _logger;
    private readonly RafVolumeState _state;
    private readonly RafLogWriter _writer;
    private readonly RafCheckpointer _checkpointer;
    private readonly SegmentReaderCache _readers;
    private readonly RafGarbageCollector _gc;
    private readonly RafMetrics _metrics;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _gcLoop;
    private readonly Task _snapshotRequestLoop;
    private readonly IPanguFileSystem _fs;
    private volatile Task _backgroundCheckpoint = Task.CompletedTask;
    private readonly bool _readOnly;
    private long _size;
    private int _closed;

    private RafVolume(IPanguFileSystem fs, IVolumeCatalog catalog, RafVolumeInfo info, RafLayout layout, PanguVolumeGuard guard, RecoveredVolume recovered,
        RafOptions options, RafMetrics metrics, ILogger logger, bool readOnly)
    {
        _fs = fs;
        _readOnly = readOnly;
        _catalog = catalog;
        _logger = logger;
        _metrics = metrics;
        _state = recovered.State;
        _size = info.SizeBytes;
        Name = info.Name;
        Recovery = new RafRecoveryReport(recovered.CheckpointSeq, recovered.ReplayedRecords, recovered.TornBytes);
        Guard = guard;
        Layout = layout;
        _readers = new SegmentReaderCache(fs, Layout, options.ReaderCacheSize);
        _checkpointer = new RafCheckpointer(fs, Layout, _state, guard, info.Replicas, options, metrics, logger) { LastSeq = recovered.CheckpointSeq };
        _writer = new RafLogWriter(fs, Layout, _state, guard, info.Replicas, options, metrics, logger, StartBackgroundCheckpoint);
        _gc = new RafGarbageCollector(fs, Layout, _state, guard, _writer, _checkpointer, _readers, options, metrics, logger);
        _gcLoop = !readOnly && options.GcInterval is { } interval ? Task.Run(() => GcLoopAsync(interval)) : Task.CompletedTask;
        _snapshotRequestLoop = !readOnly && options.SnapshotRequestInterval is { } poll ? Task.Run(() => SnapshotRequestLoopAsync(poll)) : Task.CompletedTask;
        lock (_state.Gate)
        {
            metrics.UpdateSpace(_state);
        }
    }

    public string Name { get; }
    public long Size => Interlocked.Read(ref _size);
    public bool ReadOnly => _readOnly;

    /// <summary>One engine serves every connection and updates its index before acknowledging, so every connection sees every acknowledged write.</summary>
    public bool SupportsMultiConnection => true;

    public PanguVolumeGuard Guard { get; }

    /// <summary>Completes once the engine is fenced: a newer epoch owns the volume, and every later request fails.</summary>
    public Task Fenced => _writer.Fenced;

    /// <summary>
    /// Fences the engine on the master's word that the volume's epoch moved past <see cref="Guard"/>
    /// (the lease was granted again): from now on it serves nothing, before any write finds out.
    /// </summary>
    public void FenceFromMaster(ulong currentEpoch)
    {
        if (currentEpoch <= Guard.Epoch || _readOnly || _writer.IsFenced)
        {
            return;
        }
        _logger.LogError("Volume {Volume}: the master holds epoch {Current}, newer than this engine's {Epoch}; the engine is fenced", Name, currentEpoch, Guard.Epoch);
        _writer.MarkFenced();
    }

    /// <summary>What the open found: the checkpoint used, records replayed, bytes of torn tails ignored.</summary>
    public RafRecoveryReport Recovery { get; }
    public RafLayout Layout { get; }

    /// <summary>Opens (and recovers) a volume: takes its lease, fences the previous engine, loads the newest valid checkpoint and replays the log after it.</summary>
    public static async Task<RafVolume> OpenAsync(IPanguFileSystem fs, IVolumeCatalog catalog, string volumeName, RafOptions options, ILogger logger, CancellationToken ct)
    {
        options.Validate();
        var started = Stopwatch.GetTimestamp();
        var info = await catalog.StatAsync(volumeName, ct);
        var epoch = await catalog.AcquireLeaseAsync(volumeName, options.Holder, ct);
        var guard = new PanguVolumeGuard(volumeName, epoch);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["Volume"] = volumeName, ["Epoch"] = epoch });
        var layout = await RafSharedSegments.LoadLayoutAsync(fs, info.Directory, ct);
        var recovered = await new RafRecovery(fs, layout, guard, options, logger).RecoverAsync(ct);
        var metrics = new RafMetrics(volumeName);
        metrics.Recovery.Set(Stopwatch.GetElapsedTime(started).TotalSeconds);
        metrics.Replayed.Inc(recovered.ReplayedRecords);
        logger.LogInformation("Volume {Volume} opened with epoch {Epoch}: {Size} bytes, {Extents} extents, {TornBytes} torn bytes ignored",
            volumeName, epoch, info.SizeBytes, recovered.State.Index.Count, recovered.TornBytes);
        return new RafVolume(fs, catalog, info, layout, guard, recovered, options, metrics, logger, readOnly: false);
    }

    /// <summary>
    /// Opens a volume for reading only, beside whatever engine holds its lease: no lease is
    /// taken, no segment sealed, nothing deleted. The index is the log as it stands now; a
    /// writer elsewhere may move on (and its GC may delete segments this index points at),
    /// so read-only opens are for volumes nobody writes, such as MULTI_NODE_READER_ONLY.
    /// </summary>
    public static async Task<RafVolume> OpenReadOnlyAsync(IPanguFileSystem fs, IVolumeCatalog catalog, string volumeName, RafOptions options, ILogger logger, CancellationToken ct)
    {
        options.Validate();
        var started = Stopwatch.GetTimestamp();
        var info = await catalog.StatAsync(volumeName, ct);
        // Epoch 0 is below every granted lease, so even a stray write through this guard is refused by the master.
        var guard = new PanguVolumeGuard(volumeName, 0);
        var layout = await RafSharedSegments.LoadLayoutAsync(fs, info.Directory, ct);
        var recovered = await new RafRecovery(fs, layout, guard, options, logger, readOnly: true).RecoverAsync(ct);
        var metrics = new RafMetrics(volumeName);
        metrics.Recovery.Set(Stopwatch.GetElapsedTime(started).TotalSeconds);
        metrics.Replayed.Inc(recovered.ReplayedRecords);
        logger.LogInformation("Volume {Volume} opened read-only: {Size} bytes, {Extents} extents, {TornBytes} bytes after the last valid record ignored",
            volumeName, info.SizeBytes, recovered.State.Index.Count, recovered.TornBytes);
        return new RafVolume(fs, catalog, info, layout, guard, recovered, options, metrics, logger, readOnly: true);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        CheckRange(offset, buffer.Length, "read");
        if (Volatile.Read(ref _closed) != 0)
        {
            throw new BlockDeviceException(BlockErrorKind.Io, $"volume {Name} is closed");
        }
        if (_writer.IsFenced)
        {
            // A newer engine owns the volume: this index may be stale, so serve nothing from it.
            throw new BlockDeviceException(BlockErrorKind.Fenced, $"volume {Name}: engine with epoch {Guard.Epoch} is fenced");
        }
        var started = Stopwatch.GetTimestamp();
        List<ReadPiece> pieces;
        HeadSegment? head;
        lock (_state.Gate)
        {
            pieces = _state.Index.Lookup(offset, buffer.Length);
            head = _state.Head;
            foreach (var piece in pieces.Where(p => !p.IsHole))
            {
                _state.ReadsInFlight[piece.Segment] = _state.ReadsInFlight.GetValueOrDefault(piece.Segment) + 1;
                if (head is not null && piece.Segment == head.Segment)
                {
                    head.Readers++;
                }
            }
        }
        try
        {
            var reads = new List<Task>();
            foreach (var piece in pieces)
            {
                var target = buffer.Slice((int)(piece.Start - offset), (int)piece.Length);
                if (piece.IsHole)
                {
                    target.Span.Clear();
                }
                else
                {
                    reads.Add(ReadLogAsync(piece.Segment, piece.DataOffset, target, head is not null && piece.Segment == head.Segment ? head : null, ct));
                }
            }
            await Task.WhenAll(reads);
            _metrics.ReadBytesTotal.Inc(buffer.Length);
            _metrics.ReadSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        catch (Exception e) when (e is not BlockDeviceException and not OperationCanceledException)
        {
            _metrics.ErrorsTotal.Inc();
            throw new BlockDeviceException(BlockErrorKind.Io, $"volume {Name}: read of {buffer.Length} bytes at {offset} failed: {e.Message}", e);
        }
        finally
        {
            lock (_state.Gate)
            {
                foreach (var piece in pieces.Where(p => !p.IsHole))
                {
                    _state.ReadsInFlight[piece.Segment]--;
                    if (head is not null && piece.Segment == head.Segment)
                    {
                        head.Readers--;
                    }
                }
            }
        }
    }

    /// <summary>Reads log bytes the index points at: the head through its appender, sealed segments through cached readers.</summary>
    internal async Task ReadLogAsync(ulong segment, long dataOffset, Memory<byte> target, HeadSegment? head, CancellationToken ct)
    {
        if (head is not null)
        {
            await ReadFullyAsync(head.Appender.ReadAsync, segment, dataOffset, target, ct);
        }
        else
        {
            await _readers.UseAsync(segment, async reader =>
            {
                await ReadFullyAsync(reader.ReadAsync, segment, dataOffset, target, ct);
                return 0;
            });
        }
    }

    internal static async Task ReadFullyAsync(Func<long, Memory<byte>, CancellationToken, Task<int>> read, ulong segment, long offset, Memory<byte> target, CancellationToken ct)
    {
        var done = 0;
        while (done < target.Length)
        {
            var n = await read(offset + done, target[done..], ct);
            if (n <= 0)
            {
                throw new BlockDeviceException(BlockErrorKind.Io, $"log segment {segment} ends at {offset + done}, but the index maps {target.Length} bytes at {offset}");
            }
            done += n;
        }
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default)
    {
        CheckRange(offset, data.Length, "write");
        return data.Length == 0
            ? (fua ? FlushAsync(ct) : ValueTask.CompletedTask)
            : SubmitAsync(new LogOp(LogOpKind.Write, offset, data.Length, data, fua, completeInline: true), data.Length);
    }

    /// <summary>Nothing is ever buffered by a read-only engine, so its flush has nothing to do.</summary>
    public ValueTask FlushAsync(CancellationToken ct = default) => _readOnly ? ValueTask.CompletedTask : SubmitAsync(new LogOp(LogOpKind.Flush, 0, 0, completeInline: true), 0);

    public ValueTask TrimAsync(long offset, long length, CancellationToken ct = default)
    {
        CheckRange(offset, length, "trim");
        return length == 0 ? ValueTask.CompletedTask : SubmitAsync(new LogOp(LogOpKind.Trim, offset, length, completeInline: true), length);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default)
    {
        CheckRange(offset, length, "write-zeroes");
        return length == 0
            ? (fua ? FlushAsync(ct) : ValueTask.CompletedTask)
            : SubmitAsync(new LogOp(LogOpKind.Zero, offset, length, fua: fua, completeInline: true), length);
    }

    private async ValueTask SubmitAsync(LogOp op, long bytes)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            throw new BlockDeviceException(BlockErrorKind.Io, $"volume {Name} is closed");
        }
        RequireWritable(op.Kind);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await _writer.SubmitAsync(op);
        }
        catch
        {
            _metrics.ErrorsTotal.Inc();
            throw;
        }
        _metrics.WriteBytesTotal.Inc(bytes);
        _metrics.WriteSeconds.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>Generic so that the write path formats nothing unless it throws.</summary>
    private void RequireWritable<T>(T operation)
        where T : notnull
    {
        if (_readOnly)
        {
            throw new BlockDeviceException(BlockErrorKind.ReadOnly, $"volume {Name} is open read-only: {operation.ToString()!.ToLowerInvariant()} refused");
        }
    }

    private void CheckRange(long offset, long length, string operation)
    {
        var size = Size;
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new BlockDeviceException(BlockErrorKind.InvalidArgument,
                $"volume {Name}: {operation} of {length} bytes at offset {offset} is outside the volume of {size} bytes");
        }
    }

    /// <summary>Re-reads the size from the catalog (after the volume was grown).</summary>
    public async Task<long> RefreshSizeAsync(CancellationToken ct = default)
    {
        var info = await _catalog.StatAsync(Name, ct);
        var old = Interlocked.Exchange(ref _size, info.SizeBytes);
        if (old != info.SizeBytes)
        {
            _logger.LogInformation("Volume {Volume}: size changed from {Old} to {New} bytes", Name, old, info.SizeBytes);
        }
        return info.SizeBytes;
    }

    /// <summary>Writes a checkpoint of the index now; returns the sequence number it covers.</summary>
    public async Task<ulong> CheckpointAsync(CancellationToken ct = default)
    {
        RequireWritable("checkpoint");
        try
        {
            return await _checkpointer.WriteAsync(_writer.FlushAsync, pruneAllOlder: false, ct);
        }
        catch (FencedException e)
        {
            _writer.MarkFenced();
            throw new BlockDeviceException(BlockErrorKind.Fenced, $"volume {Name}: fenced while writing a checkpoint", e);
        }
    }

    /// <summary>One GC pass: rewrites the live data of mostly-dead sealed segments and deletes them.</summary>
    public Task<RafGcResult> RunGcOnceAsync(CancellationToken ct = default)
    {
        RequireWritable("garbage collection");
        return _gc.RunOnceAsync(ct);
    }

    /// <summary>
    /// Takes snapshot <paramref name="name"/>: freezes the index as of the last applied write into
    /// <c>snapshots/NAME</c>, instantly, copying no data. Its segments are referenced from then on
    /// (GC keeps them) until the snapshot file is deleted. Taking an existing snapshot again changes nothing.
    /// </summary>
    public async Task<RafCheckpoint> TakeSnapshotAsync(string name, CancellationToken ct = default)
    {
        RequireWritable("snapshot");
        if (name.Length == 0 || name.StartsWith('.') || name.Contains('/'))
        {
            throw new BlockDeviceException(BlockErrorKind.InvalidArgument, $"volume {Name}: '{name}' is not a snapshot name");
        }
        try
        {
            return await _gc.RunExclusiveAsync(async () =>
            {
                var path = Layout.SnapshotPath(name);
                if (await RafFiles.TryReadAllAsync(_fs, path, ct) is { } existing && RafCheckpoint.TryParse(existing) is { } taken)
                {
                    return taken;
                }
                return await _checkpointer.WriteFrozenAsync(path, _writer.FlushAsync, ct);
            }, ct);
        }
        catch (FencedException e)
        {
            _writer.MarkFenced();
            throw new BlockDeviceException(BlockErrorKind.Fenced, $"volume {Name}: fenced while taking snapshot {name}", e);
        }
    }

    /// <summary>
    /// Answers snapshot requests: whoever wants a snapshot of a volume while this engine holds
    /// its lease writes <c>snapshot-requests/NAME</c>; the engine takes the snapshot, then deletes the request.
    /// </summary>
    private async Task SnapshotRequestLoopAsync(TimeSpan interval)
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval, _stopping.Token);
                foreach (var request in await RafFiles.ListNamesAsync(_fs, Layout.SnapshotRequestDirectory, _stopping.Token))
                {
                    await TakeSnapshotAsync(request, _stopping.Token);
                    await RafFiles.DeleteIfExistsAsync(_fs, Layout.SnapshotRequestPath(request), null, _stopping.Token);
                    _logger.LogInformation("Volume {Volume}: snapshot {Snapshot} taken on request", Name, request);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (BlockDeviceException e) when (e.Kind == BlockErrorKind.Fenced)
            {
                _logger.LogWarning("Volume {Volume}: snapshot requests no longer answered, the engine is fenced", Name);
                return;
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Volume {Volume}: answering snapshot requests failed; retrying", Name);
            }
        }
    }

    /// <summary>Space accounting: log bytes, live bytes, extents, segments.</summary>
    public RafVolumeStats GetStats()
    {
        lock (_state.Gate)
        {
            return new RafVolumeStats(_state.LogBytes, _state.Index.TotalLiveBytes, _state.Index.Count, _state.SegmentLengths.Count, _state.Applied);
        }
    }

    /// <summary>The periodic checkpoint the log writer started last (completed when none runs); it never throws.</summary>
    internal Task BackgroundCheckpoint => _backgroundCheckpoint;

    /// <summary>Log bytes the writer lets pass between periodic checkpoints now (see <see cref="RafOptions.CheckpointSizeFactor"/>).</summary>
    internal long PeriodicCheckpointInterval => _writer.CheckpointInterval();

    private void StartBackgroundCheckpoint()
    {
        if (!_backgroundCheckpoint.IsCompleted || _stopping.IsCancellationRequested)
        {
            return;
        }
        _backgroundCheckpoint = Task.Run(async () =>
        {
            try
            {
                await CheckpointAsync(_stopping.Token);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _logger.LogWarning(e, "Volume {Volume}: periodic checkpoint failed", Name);
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    private async Task GcLoopAsync(TimeSpan interval)
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(interval, _stopping.Token);
                await _gc.RunOnceAsync(_stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (BlockDeviceException e) when (e.Kind == BlockErrorKind.Fenced)
            {
                _logger.LogWarning("Volume {Volume}: background GC stopped, the engine is fenced", Name);
                return;
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Volume {Volume}: background GC pass failed", Name);
            }
        }
    }

    private async Task StopBackgroundAsync()
    {
        await _stopping.CancelAsync();
        await _gcLoop;
        await _snapshotRequestLoop;
        await _backgroundCheckpoint;
    }

    /// <summary>Stops like a killed process, for tests: no checkpoint, nothing flushed or closed; queued writes fail.</summary>
    public async ValueTask CrashForTestAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }
        await StopBackgroundAsync();
        await _writer.AbandonAsync();
        _metrics.Dispose();
    }

    /// <summary>Clean shutdown: a final checkpoint (unless fenced), then the head segment is flushed and sealed.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }
        await StopBackgroundAsync();
        if (!_writer.IsFenced && !_readOnly)
        {
            try
            {
                await _checkpointer.WriteAsync(_writer.FlushAsync, pruneAllOlder: false, CancellationToken.None);
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Volume {Volume}: final checkpoint failed; the next open replays the log", Name);
            }
        }
        try
        {
            await _writer.DisposeAsync();
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Volume {Volume}: closing the log failed", Name);
        }
        await _backgroundCheckpoint;
        await _readers.DisposeAsync();
        _metrics.Dispose();
        _stopping.Dispose();
        _logger.LogInformation("Volume {Volume} closed", Name);
    }
}

public sealed record RafRecoveryReport(ulong? CheckpointSeq, int ReplayedRecords, long TornBytes);

public sealed record RafVolumeStats(long LogBytes, long LiveBytes, int Extents, int Segments, LogPosition Applied);
