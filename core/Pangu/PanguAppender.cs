using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The single writer of one file. Operations are queued and run one at a time in call
/// order by whichever caller finds the queue idle; appends that queue up while one is in
/// flight are coalesced into one chunk-server append (group commit), each caller getting
/// its own file offset back.
/// </summary>
public sealed class PanguAppender : IPanguAppender
{
    private const int MaxBatchBytes = 8 * 1024 * 1024;

    private readonly PanguClientContext _ctx;
    private readonly ILogger _logger;
    private readonly object _queueLock = new();
    private readonly Queue<PendingOperation> _queue = new();
    private readonly object _layoutLock = new();
    private readonly List<PanguChunk> _chunks;
    private readonly Dictionary<string, DateTime> _excluded = new(StringComparer.Ordinal);
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
            if (op.Kind == OperationKind.Close)
            {
                _closed = true;
                _closeOperation = op;
            }
            _queue.Enqueue(op);
            var drain = !_draining;
            _draining = true;
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

    private async Task DrainAsync()
    {
        while (true)
        {
            var batch = new List<PendingOperation>();
            lock (_queueLock)
            {
                if (_queue.Count == 0)
                {
                    _draining = false;
                    return;
                }
                batch.Add(_queue.Dequeue());
                var bytes = batch[0].Data.Length;
                while (batch[0].Kind == OperationKind.Append && _queue.TryPeek(out var next) && next.Kind == OperationKind.Append
                       && bytes + next.Data.Length <= MaxBatchBytes)
                {
                    bytes += next.Data.Length;
                    batch.Add(_queue.Dequeue());
                }
            }
            await RunAsync(batch);
        }
    }

    private async Task RunAsync(List<PendingOperation> batch)
    {
        try
        {
            if (_fenced is not null)
            {
                throw new FencedException(Path, Epoch, _fenced);
            }
            switch (batch[0].Kind)
            {
                case OperationKind.Append:
                    var start = await WriteAsync(Concatenate(batch), batch.Any(b => b.Durable));
                    foreach (var op in batch)
                    {
                        op.Completion.TrySetResult(start);
                        start += op.Data.Length;
                    }
                    break;
                case OperationKind.Flush:
                    await FlushCoreAsync();
                    batch[0].Completion.TrySetResult(Length);
                    break;
                case OperationKind.Close:
                    await CloseCoreAsync();
                    batch[0].Completion.TrySetResult(Length);
                    break;
            }
        }
        catch (Exception e)
        {
            if (e is FencedException)
            {
                _fenced ??= e;
                _logger.LogWarning("writer of {Path} with epoch {Epoch} is fenced", Path, Epoch);
            }
            foreach (var op in batch)
            {
                op.Completion.TrySetException(e);
            }
        }
    }

    private static ReadOnlyMemory<byte> Concatenate(List<PendingOperation> batch)
    {
        if (batch.Count == 1)
        {
            return batch[0].Data;
        }
        var buffer = new byte[batch.Sum(b => b.Data.Length)];
        var at = 0;
        foreach (var op in batch)
        {
            op.Data.Span.CopyTo(buffer.AsSpan(at));
            at += op.Data.Length;
        }
        return buffer;
    }

    /// <summary>Appends data at the end of the file and returns where it starts.</summary>
    private async Task<long> WriteAsync(ReadOnlyMemory<byte> data, bool fua)
    {
        var start = Length;
        var done = 0;
        var failuresInRow = 0;
        while (done < data.Length)
        {
            var open = _open;
            if (open is null)
            {
                open = await StartChunkAsync();
                if (open is null)
                {
                    CountFailure(ref failuresInRow);
                    continue;
                }
            }
            var room = open.MaxLength - open.Length;
            if (room <= 0)
            {
                await SealOpenAsync();
                continue;
            }
            var size = (int)Math.Min(Math.Min(room, _ctx.Options.MaxRpcDataBytes), data.Length - done);
            switch (await open.AppendAsync(data.Slice(done, size), fua, CancellationToken.None))
            {
                case ChunkAppendOutcome.Acknowledged:
                    done += size;
                    Interlocked.Add(ref _length, size);
                    failuresInRow = 0;
                    UpdateOpenInLayout(open);
                    if (open.Length >= open.MaxLength)
                    {
                        await SealOpenAsync();
                    }
                    break;
                case ChunkAppendOutcome.ChunkFull:
                    await SealOpenAsync();
                    break;
                case ChunkAppendOutcome.ReplicaFailed:
                    Exclude(open.FailedServers);
                    CountFailure(ref failuresInRow);
                    await SealOpenAsync();
                    break;
            }
        }
        return start;
    }

    private void CountFailure(ref int failuresInRow)
    {
        if (++failuresInRow > _ctx.Options.MaxConsecutiveReplicaFailures)
        {
            throw new PanguException(PanguErrorKind.Unavailable,
                $"append to {Path} at {Length}: {failuresInRow} replica sets failed in a row, giving up");
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
    }
}
