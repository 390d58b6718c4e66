using System.Buffers;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The single writer of one file. Operations are queued in call order; appends are pipelined
/// (several in flight to the open chunk, see <see cref="DrainAsync"/>), small ones gathered into
/// one chunk-server append (group commit), each caller getting its own file offset back.
/// </summary>
public sealed class PanguAppender : IPanguAppender
{
    private readonly PanguClientContext _ctx;
    private readonly ILogger _logger;
    private readonly object _queueLock = new();
    private readonly Queue<PendingOperation> _queue = new();
    private readonly object _layoutLock = new();
    private readonly List<PanguChunk> _chunks;
    private readonly Dictionary<string, DateTime> _excluded = new(StringComparer.Ordinal);
    private readonly LinkedList<PendingOperation> _appending = new();
    private readonly Queue<InFlightPiece> _inFlight = new();
    private TaskCompletionSource? _wake;
    private long _admittedLength;
    private int _failuresInRow;
    private Exception? _broken;
    private bool _draining;
    private bool _closed;
    private PendingOperation? _closeOperation;
    private OpenChunk? _open;
    private Exception? _fenced;
    private long _length;

    private PanguAppender(PanguClientContext ctx, string path, ulong epoch, List<PanguChunk> chunks)
    {
        _ctx = ctx;
        _logger = ctx.LoggerFactory.CreateLogger<PanguAppender>();
        Path = path;
        Epoch = epoch;
        _chunks = chunks;
        _length = new ChunkLayout(chunks).Length;
        _admittedLength = _length;
    }

    public string Path { get; }
    public ulong Epoch { get; }
    public long Length => Interlocked.Read(ref _length);

    /// <summary>Takes the lease (new epoch) and seals a chunk left open by an earlier writer.</summary>
    public static async Task<PanguAppender> OpenAsync(PanguClientContext ctx, string path, PanguVolumeGuard? guard, CancellationToken ct)
    {
        var request = new OpenForAppendRequest { Path = path, ClientNode = ctx.Options.ClientNode };
        if (guard is not null)
        {
            request.Guard = new VolumeGuard { Volume = guard.Volume, Epoch = guard.Epoch };
        }
        var reply = await PanguClient.CallMasterAsync(ctx.Master, "open for append", path,
            (m, o) => m.OpenForAppendAsync(request, o).ResponseAsync, ct, guard?.Epoch ?? 0);
        var chunks = reply.File.Chunks.Select(ProtoMapping.ToChunk).ToList();
        IReadOnlyList<string> unreachable = [];
        if (chunks.Count > 0 && !chunks[^1].Sealed)
        {
            var last = chunks[^1];
            (var length, unreachable) = await new TakeoverSealer(ctx.FanOut, ctx.LoggerFactory.CreateLogger<TakeoverSealer>()).SealAsync(path, last, reply.Epoch, ct);
            await CommitAsync(ctx, path, reply.Epoch, last.Id, length, true, ct);
            chunks[^1] = last with { Length = length, Sealed = true };
        }
        var appender = new PanguAppender(ctx, path, reply.Epoch, chunks);
        appender.Exclude(unreachable);
        return appender;
    }

    public async Task<long> AppendAsync(ReadOnlyMemory<byte> data, bool durable = false, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (data.Length == 0)
        {
            ThrowIfUnusable();
            return Length;
        }
        return await EnqueueAsync(new PendingOperation(OperationKind.Append, data, durable));
    }

    public Task FlushAsync(CancellationToken ct = default) => EnqueueAsync(new PendingOperation(OperationKind.Flush, default, false));

    public Task CloseAsync(CancellationToken ct = default) => EnqueueAsync(new PendingOperation(OperationKind.Close, default, false));

    public Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        if (offset < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"read of {Path}: negative offset {offset}");
        }
        ChunkLayout layout;
        lock (_layoutLock)
        {
            layout = new ChunkLayout(_chunks.ToArray());
        }
        return layout.ReadAsync(_ctx.ChunkReader, offset, buffer, ct);
    }

    public async ValueTask DisposeAsync()
    {
        bool needsClose;
        lock (_queueLock)
        {
            needsClose = !_closed && _fenced is null;
        }
        if (needsClose)
        {
            try
            {
                await CloseAsync();
            }
            catch (Exception e) when (e is PanguException or FencedException or RpcException)
            {
                _logger.LogWarning(e, "closing {Path} on dispose failed", Path);
            }
        }
    }

    private async Task<long> EnqueueAsync(PendingOperation op)
    {
        var (admitted, drain) = Admit(op);
        if (drain)
        {
            // Started inline (no thread-pool hop): it runs until its first chunk-server call and then
            // goes on by itself, so no caller waits for later callers' work; each awaits only its own op.
            _ = DrainAsync();
        }
        return await admitted.Completion.Task;
    }

    /// <summary>Queues the operation; returns the one to wait for and whether the caller must start the drain.</summary>
    private (PendingOperation Admitted, bool Drain) Admit(PendingOperation op)
    {
        lock (_queueLock)
        {
            if (op.Kind == OperationKind.Close && _closeOperation is not null)
            {
                // Closing twice is harmless: the second call waits for the first.
                return (_closeOperation, false);
            }
            ThrowIfUnusable();
            if (op.Kind == OperationKind.Append && _broken is not null)
            {
                throw new PanguException(PanguErrorKind.Unavailable,
                    $"append to {Path}: an earlier append failed after part of it was written, so nothing may follow it in this file", _broken);
            }
            if (op.Kind == OperationKind.Close)
            {
                _closed = true;
                _closeOperation = op;
            }
            _queue.Enqueue(op);
            var drain = !_draining;
            _draining = true;
            _wake?.TrySetResult();
            return (op, drain);
        }
    }

    private void ThrowIfUnusable()
    {
        if (_fenced is not null)
        {
            throw new FencedException(Path, Epoch, _fenced);
        }
        if (_closed)
        {
            throw new InvalidOperationException($"appender of {Path} (epoch {Epoch}) is closed");
        }
    }

    /// <summary>
    /// The pipeline: admitted appends are cut into pieces sent to the open chunk without waiting for
    /// earlier ones (up to <see cref="PanguClientOptions.MaxAppendsInFlight"/>); answers are judged
    /// strictly in send order, so the acknowledged length only grows over a prefix every replica holds,
    /// and an append completes once its last byte is in that prefix. Flush and close wait for the
    /// pipeline to drain. A failed piece seals the chunk at the acknowledged prefix, and every byte
    /// after it is sent again, in the same order, to a new chunk.
    /// </summary>
    private async Task DrainAsync()
    {
        while (true)
        {
            PendingOperation? barrier = null;
            Task wake;
            lock (_queueLock)
            {
                while (_queue.TryPeek(out var next) && next.Kind == OperationKind.Append)
                {
                    _queue.Dequeue();
                    if (_fenced is not null || _broken is not null)
                    {
                        next.Completion.TrySetException(_fenced is not null ? new FencedException(Path, Epoch, _fenced)
                            : new PanguException(PanguErrorKind.Unavailable, $"append to {Path}: an earlier append failed after part of it was written", _broken));
                        continue;
                    }
                    next.FileOffset = _admittedLength;
                    _admittedLength += next.Data.Length;
                    _appending.AddLast(next);
                }
                if (_appending.Count == 0)
                {
                    if (_queue.Count == 0)
                    {
                        _draining = false;
                        _wake = null;
                        return;
                    }
                    barrier = _queue.Dequeue();
                }
                _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wake = _wake.Task;
            }
            if (barrier is not null)
            {
                await RunBarrierAsync(barrier);
                continue;
            }
            try
            {
                await SendPiecesAsync();
                if (_inFlight.Count > 0)
                {
                    Task oldest = _inFlight.Peek().Task!;
                    if (!oldest.IsCompleted)
                    {
                        // Room in the window: also wake for newly admitted appends, to send them at once.
                        await (HasUnsent() ? oldest : Task.WhenAny(oldest, wake));
                    }
                    await CompleteLandedAsync();
                }
            }
            catch (Exception e)
            {
                await FailAppendingAsync(e);
            }
        }
    }

    private async Task RunBarrierAsync(PendingOperation op)
    {
        try
        {
            if (_fenced is not null)
            {
                throw new FencedException(Path, Epoch, _fenced);
            }
            if (op.Kind == OperationKind.Flush)
            {
                await FlushCoreAsync();
            }
            else
            {
                await CloseCoreAsync();
            }
            op.Completion.TrySetResult(Length);
        }
        catch (Exception e)
        {
            if (e is FencedException)
            {
                _fenced ??= e;
                _logger.LogWarning("writer of {Path} with epoch {Epoch} is fenced", Path, Epoch);
                if (_open is not null)
                {
                    await _open.CloseStreamsAsync();
                }
            }
            op.Completion.TrySetException(e);
        }
    }

    private bool HasUnsent() => _appending.Count > 0 && _appending.Last!.Value.Sent < _appending.Last.Value.Data.Length;

    /// <summary>Sends pieces of the admitted appends while the window has room.</summary>
    private async Task SendPiecesAsync()
    {
        while (HasUnsent() && _inFlight.Count < Math.Max(1, _ctx.Options.MaxAppendsInFlight))
        {
            var open = _open;
            if (open is null)
            {
                open = await StartChunkAsync();
                if (open is null)
                {
                    CountFailure();
                    continue;
                }
            }
            var room = open.MaxLength - open.SentLength;
            if (room <= 0)
            {
                if (_inFlight.Count > 0)
                {
                    return; // seal once what is in flight is judged
                }
                await SealOpenAsync();
                continue;
            }
            var piece = CutPiece((int)Math.Min(room, _ctx.Options.MaxRpcDataBytes));
            piece.Task = open.Send(piece.Data, piece.Fua);
            _inFlight.Enqueue(piece);
        }
    }

    /// <summary>
    /// The next unsent bytes, up to <paramref name="limit"/>: a slice of one append (no copy), or small
    /// appends gathered into one pooled buffer (group commit). FUA is set on the piece ending a durable
    /// append: the replica's fdatasync then covers every earlier byte too.
    /// </summary>
    private InFlightPiece CutPiece(int limit)
    {
        var parts = new List<(PendingOperation Op, int Count)>();
        var size = 0;
        var fua = false;
        for (var node = _appending.First; node is not null && size < limit; node = node.Next)
        {
            var op = node.Value;
            var take = Math.Min(op.Data.Length - op.Sent, limit - size);
            if (take <= 0)
            {
                continue;
            }
            parts.Add((op, take));
            size += take;
            fua |= op.Durable && op.Sent + take == op.Data.Length;
        }
        if (parts.Count == 1)
        {
            var (op, count) = parts[0];
            var slice = op.Data.Slice(op.Sent, count);
            op.Sent += count;
            return new InFlightPiece(_open!, slice, size, fua, parts, null);
        }
        var buffer = ArrayPool<byte>.Shared.Rent(size);
        var at = 0;
        foreach (var (op, count) in parts)
        {
            op.Data.Span.Slice(op.Sent, count).CopyTo(buffer.AsSpan(at));
            op.Sent += count;
            at += count;
        }
        return new InFlightPiece(_open!, buffer.AsMemory(0, size), size, fua, parts, buffer);
    }

    /// <summary>Judges the landed pieces at the head of the pipeline, in send order.</summary>
    private async Task CompleteLandedAsync()
    {
        while (_inFlight.TryPeek(out var piece) && piece.Task!.IsCompleted)
        {
            var results = await piece.Task;
            var open = piece.Chunk;
            var outcome = open.Complete(results, piece.Size);
            if (outcome != ChunkAppendOutcome.Acknowledged)
            {
                await RecoverAsync(open, outcome);
                return;
            }
            _inFlight.Dequeue();
            piece.ReturnBuffer();
            Interlocked.Add(ref _length, piece.Size);
            _failuresInRow = 0;
            foreach (var (op, count) in piece.Parts)
            {
                op.Acked += count;
            }
            while (_appending.First is { } first && first.Value.Acked == first.Value.Data.Length)
            {
                _appending.RemoveFirst();
                first.Value.Completion.TrySetResult(first.Value.FileOffset);
            }
            UpdateOpenInLayout(open);
            if (open.Length >= open.MaxLength && _inFlight.Count == 0)
            {
                await SealOpenAsync();
            }
        }
    }

    /// <summary>
    /// After a piece failed or hit a full chunk: seal the chunk at the acknowledged prefix (which wakes and
    /// refuses the pieces the replicas hold for it), let the rest of the pipeline finish, and rewind so the
    /// unacknowledged bytes go out again, in order, to the next chunk.
    /// </summary>
    private async Task RecoverAsync(OpenChunk open, ChunkAppendOutcome outcome)
    {
        var failed = open.FailedServers;
        if (outcome == ChunkAppendOutcome.ReplicaFailed)
        {
            Exclude(failed);
        }
        open.Rewind();
        try
        {
            await SealOpenAsync();
        }
        finally
        {
            await AbandonInFlightAsync();
        }
        if (outcome == ChunkAppendOutcome.ReplicaFailed)
        {
            CountFailure();
        }
    }

    /// <summary>Waits for every piece still in flight (their answers no longer matter) and rewinds the appends to what was acknowledged.</summary>
    private async Task AbandonInFlightAsync()
    {
        foreach (var piece in _inFlight)
        {
            try
            {
                await piece.Task!;
            }
            catch (Exception e)
            {
                _logger.LogDebug(e, "{Path}: abandoned append piece failed", Path);
            }
            piece.ReturnBuffer();
        }
        _inFlight.Clear();
        foreach (var op in _appending)
        {
            op.Sent = op.Acked;
        }
    }

    /// <summary>
    /// Fails every admitted append that is not acknowledged. If one of them was partly written, the file
    /// now ends in a torn piece, so the appender refuses further appends (nothing may follow a torn write).
    /// </summary>
    private async Task FailAppendingAsync(Exception e)
    {
        await AbandonInFlightAsync();
        if (_open is not null)
        {
            _open.Rewind();
            await _open.CloseStreamsAsync();
        }
        if (e is FencedException)
        {
            _fenced ??= e;
            _logger.LogWarning("writer of {Path} with epoch {Epoch} is fenced", Path, Epoch);
        }
        else if (_appending.Any(op => op.Acked > 0))
        {
            _broken ??= e;
            _logger.LogError(e, "{Path}: an append failed after part of it was acknowledged; the appender takes no more appends", Path);
        }
        lock (_queueLock)
        {
            _admittedLength = Length;
        }
        foreach (var op in _appending)
        {
            op.Completion.TrySetException(e);
        }
        _appending.Clear();
    }

    private void CountFailure()
    {
        if (++_failuresInRow > _ctx.Options.MaxConsecutiveReplicaFailures)
        {
            _failuresInRow = 0;
            throw new PanguException(PanguErrorKind.Unavailable,
                $"append to {Path} at {Length}: {_ctx.Options.MaxConsecutiveReplicaFailures + 1} replica sets failed in a row, giving up");
        }
    }

    /// <summary>Allocates a chunk and creates it on its replicas; null when a replica failed (the chunk is then sealed empty).</summary>
    private async Task<OpenChunk?> StartChunkAsync()
    {
        var location = await AllocateAsync();
        var open = new OpenChunk(location, Path, Epoch, _ctx.FanOut, _logger);
        lock (_layoutLock)
        {
            _chunks.Add(open.ToChunk(false));
        }
        _open = open;
        _logger.LogDebug("{Path}: chunk {ChunkId} at {Offset} on {Servers}", Path, open.Id, open.FileOffset, string.Join(",", open.Replicas.Select(r => r.ChunkServerId)));
        if (await open.CreateAsync(CancellationToken.None))
        {
            return open;
        }
        Exclude(open.FailedServers);
        await SealOpenAsync();
        return null;
    }

    /// <summary>
    /// Asks the master for a new chunk. "No alive chunk server" is waited out like a master outage
    /// (up to <see cref="PanguClientOptions.MasterUnavailableRetry"/>): after a master restart or a
    /// chunk-server restart the servers come back within seconds, and the write must pause, not fail.
    /// Servers this appender excluded are tried again first, as they may be back.
    /// </summary>
    private async Task<ChunkLocation> AllocateAsync()
    {
        var giveUpAt = DateTime.UtcNow + _ctx.Options.MasterUnavailableRetry;
        var backoff = TimeSpan.FromMilliseconds(200);
        for (var attempt = 1; ; attempt++)
        {
            var request = new AllocateChunkRequest { Path = Path, Epoch = Epoch, PreferredNode = _ctx.Options.ClientNode };
            request.ExcludeChunkServers.AddRange(CurrentExclusions());
            try
            {
                return await _ctx.Master.CallAsync("AllocateChunk", (m, o) => m.AllocateChunkAsync(request, o).ResponseAsync, CancellationToken.None);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.ResourceExhausted && FeitianStatus.HasReason(e, ErrorReasons.NoChunkServers)
                                         && (request.ExcludeChunkServers.Count > 0 || DateTime.UtcNow < giveUpAt))
            {
                if (request.ExcludeChunkServers.Count > 0)
                {
                    // Excluding failed servers left too few: they may be back, so try them again.
                    _logger.LogWarning("no replica set for {Path} without {Excluded}; retrying with them", Path, string.Join(",", request.ExcludeChunkServers));
                    lock (_excluded)
                    {
                        _excluded.Clear();
                    }
                }
                else if (attempt % 10 == 1)
                {
                    _logger.LogWarning("no alive chunk servers for a chunk of {Path} (attempt {Attempt}); waiting for them", Path, attempt);
                }
                await Task.Delay(backoff);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
            }
            catch (RpcException e)
            {
                throw RpcErrors.Map(e, "allocate chunk for", Path, Epoch);
            }
        }
    }

    /// <summary>Seals the open chunk at its acknowledged length on every replica that answers and records it at the master.</summary>
    private async Task SealOpenAsync()
    {
        var open = _open ?? throw new InvalidOperationException("no open chunk");
        var sealedReplicas = await open.SealAsync(CancellationToken.None);
        if (sealedReplicas < open.Replicas.Count)
        {
            Exclude(open.FailedServers);
        }
        if (sealedReplicas == 0)
        {
            _logger.LogWarning("{Path}: no replica of chunk {ChunkId} answered the seal at {Length}; recording the length at the master only", Path, open.Id, open.Length);
        }
        await CommitAsync(_ctx, Path, Epoch, open.Id, open.Length, true, CancellationToken.None);
        lock (_layoutLock)
        {
            _chunks[^1] = open.ToChunk(true);
        }
        _open = null;
    }

    private async Task FlushCoreAsync()
    {
        var open = _open;
        if (open is null)
        {
            return;
        }
        if (!await open.SyncAsync(CancellationToken.None))
        {
            // Sealing syncs every replica that still answers; the failed ones get re-replicated.
            Exclude(open.FailedServers);
            await SealOpenAsync();
            return;
        }
        await CommitAsync(_ctx, Path, Epoch, open.Id, open.Length, false, CancellationToken.None);
    }

    private async Task CloseCoreAsync()
    {
        if (_open is not null)
        {
            await SealOpenAsync();
        }
        _logger.LogDebug("closed {Path} at {Length} (epoch {Epoch})", Path, Length, Epoch);
    }

    private void UpdateOpenInLayout(OpenChunk open)
    {
        lock (_layoutLock)
        {
            _chunks[^1] = open.ToChunk(false);
        }
    }

    private void Exclude(IEnumerable<string> servers)
    {
        lock (_excluded)
        {
            foreach (var s in servers)
            {
                _excluded[s] = DateTime.UtcNow + _ctx.Options.FailedServerExclusion;
            }
        }
    }

    private string[] CurrentExclusions()
    {
        lock (_excluded)
        {
            var now = DateTime.UtcNow;
            foreach (var expired in _excluded.Where(e => e.Value <= now).Select(e => e.Key).ToArray())
            {
                _excluded.Remove(expired);
            }
            return _excluded.Keys.ToArray();
        }
    }

    private static async Task CommitAsync(PanguClientContext ctx, string path, ulong epoch, ulong chunkId, long length, bool sealedFlag, CancellationToken ct)
    {
        await PanguClient.CallMasterAsync(ctx.Master, "commit chunk of", path, (m, o) => m.CommitChunkAsync(new CommitChunkRequest
        {
            Path = path,
            Epoch = epoch,
            ChunkId = chunkId,
            Length = (ulong)length,
            Sealed = sealedFlag,
        }, o).ResponseAsync, ct, epoch);
    }

    private enum OperationKind { Append, Flush, Close }

    private sealed class PendingOperation(OperationKind kind, ReadOnlyMemory<byte> data, bool durable)
    {
        public OperationKind Kind { get; } = kind;
        public ReadOnlyMemory<byte> Data { get; } = data;
        public bool Durable { get; } = durable;
        public TaskCompletionSource<long> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        /// <summary>Where the append starts in the file (fixed on admission: a failure re-sends, never moves, bytes).</summary>
        public long FileOffset { get; set; }
        /// <summary>Bytes sent to the open chunk (acknowledged or in flight).</summary>
        public int Sent { get; set; }
        /// <summary>Bytes every replica acknowledged.</summary>
        public int Acked { get; set; }
    }

    /// <summary>One append call in flight to every replica of <see cref="Chunk"/>, covering the given parts of pending appends.</summary>
    private sealed class InFlightPiece(OpenChunk chunk, ReadOnlyMemory<byte> data, int size, bool fua, List<(PendingOperation Op, int Count)> parts, byte[]? rented)
    {
        private byte[]? _rented = rented;
        public OpenChunk Chunk { get; } = chunk;
        public ReadOnlyMemory<byte> Data { get; } = data;
        public int Size { get; } = size;
        public bool Fua { get; } = fua;
        public List<(PendingOperation Op, int Count)> Parts { get; } = parts;
        public Task<IReadOnlyList<ReplicaResult<Proto.ChunkServer.AppendResponse>>>? Task { get; set; }

        public void ReturnBuffer()
        {
            if (_rented is not null)
            {
                ArrayPool<byte>.Shared.Return(_rented);
                _rented = null;
            }
        }
    }
}
