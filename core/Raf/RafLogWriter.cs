using System.Buffers;
using System.Threading.Channels;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Pangu;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// The single writer of a volume's log with group commit and pipelining: up to
/// <see cref="RafOptions.MaxAppendsInFlight"/> appends are in flight at once (requests queued while the
/// window is full go into the next append together), and each append's records are applied to the index
/// in log order only after the file system acknowledged it and every earlier one; then its requests are
/// acknowledged. A flush, seal, FUA write or segment roll first waits for the pipeline to drain. A FUA or flush request
/// flushes the head segment after the append, which makes every earlier acknowledged
/// record durable on every replica (earlier segments were flushed when the head rolled
/// past them).
/// After a failed append the next one starts a new segment, so an acknowledged record
/// never follows bytes that may be torn; but a segment this engine created that still holds no
/// chunk (its roll or first allocation failed, e.g. while no master answered) is reused, so a
/// master outage costs at most one new segment, never one per attempt.
/// </summary>
public sealed class RafLogWriter : IAsyncDisposable
{
    private readonly IPanguFileSystem _fs;
    private readonly RafLayout _layout;
    private readonly RafVolumeState _state;
    private readonly PanguVolumeGuard _guard;
    private readonly int _replicas;
    private readonly RafOptions _options;
    private readonly RafMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Action _checkpointDue;
    private readonly Channel<LogOp> _queue = Channel.CreateUnbounded<LogOp>(new UnboundedChannelOptions { SingleReader = false });
    private readonly List<Task> _retiring = [];
    private readonly Task _loop;
    private readonly Queue<InFlightAppend> _inFlight = new();
    /// <summary>Bytes of the head segment acknowledged or in flight.</summary>
    private long _headSent;
    private ulong _nextSeq;
    private bool _needsNewSegment = true;
    /// <summary>A segment this engine created to which no record has been appended yet; the next roll reuses it while it holds no chunk.</summary>
    private ulong? _unusedSegment;
    private long _bytesSinceCheckpoint;
    private readonly TaskCompletionSource _fencedSignal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _abandoned;

    public RafLogWriter(IPanguFileSystem fs, RafLayout layout, RafVolumeState state, PanguVolumeGuard guard, int replicas,
        RafOptions options, RafMetrics metrics, ILogger logger, Action checkpointDue)
    {
        _fs = fs;
        _layout = layout;
        _state = state;
        _guard = guard;
        _replicas = replicas;
        _options = options;
        _metrics = metrics;
        _logger = logger;
        _checkpointDue = checkpointDue;
        _nextSeq = state.Applied.Seq + 1;
        _loop = Task.Run(RunAsync);
    }

    public bool IsFenced => _fencedSignal.Task.IsCompleted;

    /// <summary>Completes once this writer is fenced (a newer epoch owns the volume); it never writes again.</summary>
    public Task Fenced => _fencedSignal.Task;

    public void MarkFenced() => _fencedSignal.TrySetResult();

    /// <summary>Queues the request; the task completes when it is acknowledged or fails with a <see cref="BlockDeviceException"/>.</summary>
    public Task SubmitAsync(LogOp op)
    {
        if (IsFenced)
        {
            return Task.FromException(FencedError());
        }
        if (!_queue.Writer.TryWrite(op))
        {
            return Task.FromException(new BlockDeviceException(BlockErrorKind.Io, $"volume {_guard.Volume} is closed"));
        }
        return op.Done.Task;
    }

    /// <summary>Makes every acknowledged record durable (used before a checkpoint names a log position).</summary>
    public Task FlushAsync() => SubmitAsync(new LogOp(LogOpKind.Flush, 0, 0));

    /// <summary>Seals the head segment (the next record starts a new one) so GC may collect it.</summary>
    public Task SealHeadAsync() => SubmitAsync(new LogOp(LogOpKind.Seal, 0, 0));

    private BlockDeviceException FencedError(Exception? inner = null) =>
        new(BlockErrorKind.Fenced, $"volume {_guard.Volume} (epoch {_guard.Epoch}) was opened by a newer engine; this engine is fenced", inner);

    private async Task RunAsync()
    {
        var batch = new List<LogOp>();
        while (true)
        {
            if (!_queue.Reader.TryPeek(out _))
            {
                if (_inFlight.Count == 0)
                {
                    if (!await _queue.Reader.WaitToReadAsync())
                    {
                        break;
                    }
                }
                else
                {
                    // Requests arriving while appends are in flight are sent at once (pipelining), not held back.
                    var more = _queue.Reader.WaitToReadAsync().AsTask();
                    await Task.WhenAny(_inFlight.Peek().Append, more);
                    await CompleteLandedAsync(all: false);
                    if (more.IsCompleted && !await more)
                    {
                        break;
                    }
                    continue;
                }
            }
            if (_inFlight.Count >= Math.Max(1, _options.MaxAppendsInFlight))
            {
                // The window is full: wait for the oldest; what queues meanwhile goes into one batch (group commit).
                await CompleteLandedAsync(all: false, waitForOldest: true);
                continue;
            }
            batch = [];
            long bytes = 0;
            while (bytes < _options.MaxBatchBytes && _queue.Reader.TryRead(out var op))
            {
                batch.Add(op);
                bytes += op.LogBytes(_options.MaxRecordDataBytes);
            }
            if (_abandoned)
            {
                await CompleteLandedAsync(all: true);
                Fail(batch, new BlockDeviceException(BlockErrorKind.Io, $"volume {_guard.Volume} engine stopped"));
                continue;
            }
            await ProcessAsync(batch, bytes);
        }
        await CompleteLandedAsync(all: true);
    }

    /// <summary>
    /// Sends a batch of plain records to the head without waiting (it joins the pipeline); a batch that
    /// flushes, seals or needs a new segment first waits until every append in flight is applied.
    /// </summary>
    private async Task ProcessAsync(List<LogOp> batch, long bytes)
    {
        if (IsFenced)
        {
            await CompleteLandedAsync(all: true);
            Fail(batch, FencedError());
            return;
        }
        var hasRecords = batch.Any(op => op.Kind is not (LogOpKind.Flush or LogOpKind.Seal));
        var barrier = batch.Any(op => op.Kind is LogOpKind.Flush or LogOpKind.Seal || op.Fua);
        var head = _state.Head;
        var needsRoll = hasRecords && (_needsNewSegment || head is null || (_headSent > 0 && _headSent + bytes > _options.SegmentSizeBytes));
        if (!barrier && !needsRoll && head is not null && hasRecords)
        {
            var (buffer, length, records) = Encode(batch, (int)bytes);
            _headSent += length;
            _inFlight.Enqueue(new InFlightAppend(batch, head, length, records, buffer, StartAppend(head.Appender, buffer.AsMemory(0, length))));
            return;
        }
        await CompleteLandedAsync(all: true);
        if (IsFenced)
        {
            Fail(batch, FencedError());
            return;
        }
        try
        {
            head = _state.Head;
            if (head is not null && batch.Any(op => op.Kind == LogOpKind.Seal))
            {
                head = await RollAsync(head);
            }
            else if (hasRecords && (_needsNewSegment || head is null || (head.Appender.Length > 0 && head.Appender.Length + bytes > _options.SegmentSizeBytes)))
            {
                head = await RollAsync(head);
            }
            if (head is null)
            {
                // Nothing was written since open: nothing to flush.
                Complete(batch);
                return;
            }
            var (buffer, length, records) = Encode(batch, (int)bytes);
            long baseOffset = 0;
            try
            {
                if (length > 0)
                {
                    baseOffset = await head.Appender.AppendAsync(buffer.AsMemory(0, length));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            if (batch.Any(op => op.Kind == LogOpKind.Flush || op.Fua))
            {
                await head.Appender.FlushAsync();
                _metrics.FlushesTotal.Inc();
            }
            _headSent = head.Appender.Length;
            Applied(batch, head, baseOffset, length, records);
        }
        catch (Exception e)
        {
            Failed(batch, bytes, e);
        }
    }

    private static Task<long> StartAppend(IPanguAppender appender, ReadOnlyMemory<byte> buffer)
    {
        try
        {
            return appender.AppendAsync(buffer);
        }
        catch (Exception e)
        {
            return Task.FromException<long>(e);
        }
    }

    /// <summary>Applies the appends in flight whose answers are in, oldest first (all of them when <paramref name="all"/>).</summary>
    private async Task CompleteLandedAsync(bool all, bool waitForOldest = false)
    {
        while (_inFlight.TryPeek(out var append) && (all || waitForOldest || append.Append.IsCompleted))
        {
            waitForOldest = false;
            _inFlight.Dequeue();
            try
            {
                var baseOffset = await append.Append;
                Applied(append.Batch, append.Head, baseOffset, append.Length, append.Records);
            }
            catch (Exception e)
            {
                Failed(append.Batch, append.Length, e);
            }
            finally
            {
                // The appender is done with the bytes once its task completed (a failure waits for every send).
                ArrayPool<byte>.Shared.Return(append.Buffer);
            }
        }
    }

    private void Applied(List<LogOp> batch, HeadSegment head, long baseOffset, int length, List<(LogOp Op, RafRecordHeader Header, int At)> records)
    {
        if (length > 0)
        {
            _metrics.Appends.Inc();
            _metrics.AppendBytes.Inc(length);
            _metrics.Records.Inc(records.Count);
            _unusedSegment = null;
            Apply(head.Segment, baseOffset, length, records);
        }
        _bytesSinceCheckpoint += length;
        if (_bytesSinceCheckpoint >= CheckpointInterval())
        {
            _bytesSinceCheckpoint = 0;
            _checkpointDue();
        }
        // Last: a frontend op's waiter runs on this thread (see LogOp), so the checkpoint is already under way when it resumes.
        Complete(batch);
    }

    /// <summary>Log bytes between periodic checkpoints: the configured interval, or a multiple of what a checkpoint of the index now costs.</summary>
    internal long CheckpointInterval() =>
        Math.Max(_options.CheckpointIntervalBytes, _options.CheckpointSizeFactor * RafCheckpoint.SerializedSize(_state.Index.Count));

    private void Failed(List<LogOp> batch, long bytes, Exception e)
    {
        if (e is FencedException fenced)
        {
            MarkFenced();
            _logger.LogError("Volume {Volume} fenced at epoch {Epoch} while appending to {Path}", _guard.Volume, _guard.Epoch, fenced.Path);
            Fail(batch, FencedError(fenced));
            return;
        }
        _needsNewSegment = true;
        _logger.LogError(e, "Volume {Volume}: log append of {Count} requests ({Bytes} bytes) failed; the next append starts a new segment",
            _guard.Volume, batch.Count, bytes);
        Fail(batch, e as BlockDeviceException ?? new BlockDeviceException(BlockErrorKind.Io,
            $"volume {_guard.Volume}: log append of {bytes} bytes failed: {e.Message}", e));
    }

    /// <summary>A batch whose log append is in flight: applied to the index and acknowledged when it and every earlier one landed.</summary>
    private sealed record InFlightAppend(List<LogOp> Batch, HeadSegment Head, int Length, List<(LogOp Op, RafRecordHeader Header, int At)> Records, byte[] Buffer, Task<long> Append);

    /// <summary>The batch's records in a buffer from the shared pool (the caller returns it once the append is over).</summary>
    private (byte[] Buffer, int Length, List<(LogOp Op, RafRecordHeader Header, int At)> Records) Encode(List<LogOp> batch, int bytes)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(bytes, 1));
        var records = new List<(LogOp, RafRecordHeader, int)>();
        var at = 0;
        foreach (var op in batch)
        {
            switch (op.Kind)
            {
                case LogOpKind.Flush:
                case LogOpKind.Seal:
                    break;
                case LogOpKind.Trim:
                case LogOpKind.Zero:
                    var range = RafRecordHeader.ForRange(op.Kind == LogOpKind.Trim ? RafRecordKind.Trim : RafRecordKind.Zero, _nextSeq++, op.Offset, op.Length);
                    range.Write(buffer.AsSpan(at));
                    records.Add((op, range, at));
                    at += RafRecordHeader.Size;
                    break;
                default:
                    for (var done = 0; done < op.Data.Length || (done == 0 && op.Data.Length == 0); done += _options.MaxRecordDataBytes)
                    {
                        var data = op.Data.Span.Slice(done, Math.Min(_options.MaxRecordDataBytes, op.Data.Length - done));
                        var header = op.Kind == LogOpKind.Relocate
                            ? RafRecordHeader.ForData(RafRecordKind.Relocate, _nextSeq++, op.Offset + done, data, op.SourceSegment, op.SourceOffset + done)
                            : RafRecordHeader.ForData(RafRecordKind.Write, _nextSeq++, op.Offset + done, data);
                        header.Write(buffer.AsSpan(at));
                        data.CopyTo(buffer.AsSpan(at + RafRecordHeader.Size));
                        records.Add((op, header, at));
                        at += header.RecordLength;
                        if (data.Length == 0)
                        {
                            break;
                        }
                    }
                    break;
            }
        }
        return (buffer, at, records);
    }

    private void Apply(ulong segment, long baseOffset, int length, List<(LogOp Op, RafRecordHeader Header, int At)> records)
    {
        lock (_state.Gate)
        {
            foreach (var (op, header, at) in records)
            {
                var dataOffset = baseOffset + at + RafRecordHeader.Size;
                if (header.Kind == RafRecordKind.Relocate)
                {
                    op.Relocated += _state.Index.Relocate(header.VolumeOffset, header.Length, header.SourceSegment, header.SourceOffset, segment, dataOffset);
                }
                else
                {
                    RafVolumeState.ApplyRecord(_state.Index, header, segment, dataOffset);
                }
            }
            _state.Applied = new LogPosition(segment, baseOffset + length, records[^1].Header.Seq);
            _state.SegmentLengths[segment] = Math.Max(_state.SegmentLengths.GetValueOrDefault(segment), baseOffset + length);
            _metrics.UpdateSpace(_state);
        }
    }

    private async Task<HeadSegment> RollAsync(HeadSegment? old)
    {
        var reuse = await ReusableSegmentAsync();
        if (old is not null && old.Segment == reuse)
        {
            // The head never got a chunk: open it again instead of starting another segment.
            lock (_state.Gate)
            {
                _state.Head = null;
            }
            _retiring.RemoveAll(t => t.IsCompleted);
            _retiring.Add(RetireAsync(old));
            old = null;
        }
        else if (old is not null)
        {
            try
            {
                // FLUSH flushes only the head, so the head must be durable before it stops being the head.
                await old.Appender.FlushAsync();
            }
            catch (FencedException)
            {
                throw;
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Volume {Volume}: flushing sealed segment {Path} failed", _guard.Volume, old.Appender.Path);
            }
        }
        ulong segment;
        lock (_state.Gate)
        {
            segment = reuse ?? _state.HighestSegment + 1;
        }
        var path = _layout.SegmentPath(segment);
        try
        {
            await _fs.CreateAsync(path, _replicas, _guard);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.AlreadyExists)
        {
            // Created by an earlier roll of this engine that failed before appending: reuse it if empty.
            if (!IsEmpty(await _fs.StatAsync(path)))
            {
                lock (_state.Gate)
                {
                    _state.HighestSegment = Math.Max(_state.HighestSegment, segment);
                    _state.SegmentLengths.TryAdd(segment, 0);
                }
                throw;
            }
        }
        lock (_state.Gate)
        {
            _state.HighestSegment = Math.Max(_state.HighestSegment, segment);
            _state.SegmentLengths.TryAdd(segment, 0);
        }
        _unusedSegment = segment;
        var appender = await _fs.OpenForAppendAsync(path, _guard);
        var head = new HeadSegment(segment, appender);
        lock (_state.Gate)
        {
            _state.Head = head;
            _state.Applied = new LogPosition(segment, 0, _state.Applied.Seq);
        }
        _needsNewSegment = false;
        _logger.LogInformation("Volume {Volume}: log segment {Path} {How} (epoch {Epoch})", _guard.Volume, path, reuse is null ? "started" : "reopened", appender.Epoch);
        if (old is not null)
        {
            _retiring.RemoveAll(t => t.IsCompleted);
            _retiring.Add(RetireAsync(old));
        }
        return head;
    }

    /// <summary>The segment created by this engine that never got a chunk (so holds no byte, torn or not), if any.</summary>
    private async Task<ulong?> ReusableSegmentAsync()
    {
        if (_unusedSegment is not { } candidate)
        {
            return null;
        }
        var info = await _fs.StatAsync(_layout.SegmentPath(candidate));
        if (info is null || IsEmpty(info))
        {
            return candidate;
        }
        _unusedSegment = null;
        return null;
    }

    private static bool IsEmpty(PanguFileInfo? info) => info is not null && info.Length == 0 && info.Chunks.Count == 0;

    /// <summary>Seals a former head once no read uses its appender any more.</summary>
    private async Task RetireAsync(HeadSegment old)
    {
        while (true)
        {
            lock (_state.Gate)
            {
                if (old.Readers == 0)
                {
                    break;
                }
            }
            await Task.Delay(1);
        }
        try
        {
            await old.Appender.CloseAsync();
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Volume {Volume}: closing log segment {Path} failed", _guard.Volume, old.Appender.Path);
        }
        await old.Appender.DisposeAsync();
    }

    private static void Complete(List<LogOp> batch)
    {
        foreach (var op in batch)
        {
            op.Done.TrySetResult();
        }
    }

    private static void Fail(List<LogOp> batch, Exception error)
    {
        foreach (var op in batch)
        {
            op.Done.TrySetException(error);
        }
    }

    /// <summary>Stops like a crashed process: queued requests fail, nothing is flushed or closed.</summary>
    public async Task AbandonAsync()
    {
        _abandoned = true;
        _queue.Writer.TryComplete();
        await _loop;
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _loop;
        await Task.WhenAll(_retiring);
        var head = _state.Head;
        if (head is not null && !_abandoned)
        {
            await RetireAsync(head);
        }
    }
}
