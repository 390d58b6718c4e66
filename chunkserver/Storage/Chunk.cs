using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// One append-only chunk: a data file plus a sidecar of per-block CRC32C, and a meta file (epoch, sealed).
/// Every operation runs under the chunk's lock, so operations on one chunk are serialized while
/// different chunks proceed in parallel.
/// Invariants: the in-memory length and checksums describe only bytes that were fully written
/// (data and checksums); a refused or failed operation leaves both memory and disk as they were;
/// the epoch never decreases; a sealed chunk never changes length.
/// </summary>
internal sealed class Chunk : IDisposable
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly ChunkFiles _files;
    private readonly SafeFileHandle _data;
    private readonly SafeFileHandle _checksumFile;
    private readonly BlockChecksums _checksums;
    private readonly long _diskReserve;
    private readonly ILogger _log;
    private ChunkMeta _meta;
    private long _length;
    private bool _deleted;
    // Tail slot holding the last durable (synced) state, and the slot holding the latest state.
    // Appends never write the durable slot (see ChecksumFileLayout).
    private int _durableSlot;
    private int _latestSlot;
    private TaskCompletionSource _lengthChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _dropBehind;
    // Data-file bytes below this were dropped from the page cache (whole pages, durable when dropped).
    private long _droppedBelow;
    // Data-file bytes below this were handed to the kernel's writeback (see StartWriteback).
    private long _writebackBelow;

    /// <summary>
    /// Appended bytes are handed to the disk in steps of this size as they arrive, not all at the next
    /// fdatasync: a seal of a full 64 MiB chunk otherwise waits for the whole chunk to reach the disk while
    /// the writer's pipeline stands still.
    /// </summary>
    internal const long WritebackStepBytes = 4L << 20;

    /// <summary>Data-file bytes below this were handed to writeback (a multiple of the page size).</summary>
    internal long WritebackBelow => _writebackBelow;

    private Chunk(ulong id, DataDirectory directory, ChunkFiles files, SafeFileHandle data, SafeFileHandle checksumFile,
        BlockChecksums checksums, ChunkMeta meta, long length, int slot, long diskReserve, ILogger log)
    {
        _durableSlot = slot;
        _latestSlot = slot;
        Id = id;
        Directory = directory;
        _files = files;
        _data = data;
        _checksumFile = checksumFile;
        _checksums = checksums;
        _meta = meta;
        _length = length;
        _writebackBelow = PageCache.WholePagesBelow(length);
        _diskReserve = diskReserve;
        _log = log;
    }

    public ulong Id { get; }

    public DataDirectory Directory { get; }

    /// <summary>Unlocked snapshot (fields are read atomically); for inventories and metrics.</summary>
    public ChunkState State => new(Id, Volatile.Read(ref _length), _meta.Sealed, _meta.Epoch, _meta.MaxLength);

    /// <summary>Bytes this chunk holds on disk (data and checksums).</summary>
    public long DiskBytes => Volatile.Read(ref _length) + ChecksumFileLayout.EntryOffset(_checksums.FullCount);

    public static Chunk Create(DataDirectory directory, ulong id, ulong epoch, long maxLength, int blockSize, long diskReserve, ILogger log)
    {
        var files = new ChunkFiles(directory.ChunksPath, id);
        if (directory.AvailableBytes - diskReserve < 64 * 1024)
        {
            throw new ChunkStoreException(ChunkError.DiskFull, $"chunk {id}: no space left in {directory.Path} to create it");
        }
        SafeFileHandle? data = null;
        SafeFileHandle? checksums = null;
        try
        {
            data = OpenFile(files.Data, FileMode.Create);
            checksums = OpenFile(files.Checksums, FileMode.Create);
            var empty = ChecksumFileLayout.EncodeSlot(new TailSlot(0, 0));
            RandomAccess.Write(checksums, [.. empty, .. empty], 0);
            var meta = new ChunkMeta(epoch, Sealed: false, SealedLength: 0, maxLength, blockSize);
            meta.Save(files.Meta);
            return new Chunk(id, directory, files, data, checksums, new BlockChecksums(blockSize, [], 0), meta, 0, slot: 0, diskReserve, log);
        }
        catch (IOException error)
        {
            data?.Dispose();
            checksums?.Dispose();
            File.Delete(files.Meta);
            File.Delete(files.Data);
            File.Delete(files.Checksums);
            throw Classify(error, $"chunk {id}: create in {directory.Path}");
        }
    }

    /// <summary>Opens a chunk found on disk, cutting back a torn tail left by a crash.</summary>
    public static Chunk Open(DataDirectory directory, ChunkFiles files, long diskReserve, ILogger log)
    {
        var meta = ChunkMeta.Load(files.Meta);
        var blockSize = meta.BlockSize;
        var data = OpenFile(files.Data, FileMode.OpenOrCreate);
        try
        {
            var checksumFile = OpenFile(files.Checksums, FileMode.OpenOrCreate);
            try
            {
                var recovered = ChunkRecovery.Recover(files.ChunkId, meta, data, checksumFile, blockSize, log);
                return new Chunk(files.ChunkId, directory, files, data, checksumFile,
                    new BlockChecksums(blockSize, recovered.FullBlocks, recovered.TailCrc), meta, recovered.Length, recovered.Slot, diskReserve, log);
            }
            catch
            {
                checksumFile.Dispose();
                throw;
            }
        }
        catch
        {
            data.Dispose();
            throw;
        }
    }

    public Task<ChunkState> InfoAsync() => LockedAsync(() => State);

    /// <summary>
    /// Whether durable bytes leave the page cache (the writer reads another replica; see
    /// <see cref="DropDurablePages"/>). The latest stream's header decides.
    /// </summary>
    public bool DropBehind
    {
        get => _dropBehind;
        set => _dropBehind = value;
    }

    /// <summary>
    /// Persists a higher epoch before answering, so the length returned is final for older writers:
    /// nothing of theirs lands afterwards (held appends are woken and refused).
    /// </summary>
    public Task<ChunkState> FenceAsync(ulong epoch) => LockedAsync(() =>
    {
        CheckEpoch(epoch, "fence");
        RaiseEpoch(epoch);
        SignalLengthChanged();
        return State;
    });

    /// <summary>
    /// Appends at exactly <paramref name="expectedOffset"/>. Pipelined appends of one writer may arrive out of
    /// order, so an append ahead of the length (by at most <paramref name="maxGap"/>) is held until its
    /// predecessors landed, then applied in offset order; if the gap has not filled after
    /// <paramref name="gapTimeout"/> it is refused as wrong-offset, with nothing applied. A stale epoch is
    /// refused on arrival, and a seal or delete while held refuses it too. Once <paramref name="ct"/> is cancelled
    /// (the stream that carried it went away) it is dropped instead of applied, with OperationCanceledException.
    /// </summary>
    public async Task<long> AppendAsync(ulong epoch, ulong expectedOffset, ReadOnlyMemory<byte> data, bool fua, TimeSpan gapTimeout, long maxGap,
        CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + gapTimeout;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            Task landed;
            await _lock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_deleted)
                {
                    throw new ChunkStoreException(ChunkError.NotFound, $"chunk {Id} not found (deleted)");
                }
                if (!IsEarlyArrival(expectedOffset, maxGap))
                {
                    return Append(epoch, expectedOffset, data.Span, fua);
                }
                CheckEpoch(epoch, "append");
                if (expectedOffset + (ulong)data.Length > (ulong)_meta.MaxLength)
                {
                    throw new ChunkStoreException(ChunkError.ChunkFull,
                        $"chunk {Id}: append of {data.Length} bytes at {expectedOffset} passes the chunk's max length {_meta.MaxLength}", _length);
                }
                landed = _lengthChanged.Task;
            }
            finally
            {
                _lock.Release();
            }
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !await WaitAsync(landed, left, ct).ConfigureAwait(false))
            {
                var length = Volatile.Read(ref _length);
                if (expectedOffset > (ulong)length)
                {
                    throw new ChunkStoreException(ChunkError.WrongOffset,
                        $"chunk {Id}: append at offset {expectedOffset} held {gapTimeout.TotalMilliseconds:0} ms but the chunk length stayed at {length}: the gap never filled", length);
                }
            }
        }
    }

    /// <summary>An append ahead of the length that could still fit once its predecessors land.</summary>
    private bool IsEarlyArrival(ulong expectedOffset, long maxGap) =>
        !_meta.Sealed && expectedOffset > (ulong)_length && expectedOffset - (ulong)_length <= (ulong)maxGap;

    private static async Task<bool> WaitAsync(Task task, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            await task.WaitAsync(timeout, ct).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Wakes appends held for their predecessors: the length changed, or the chunk was sealed or deleted.</summary>
    private void SignalLengthChanged()
    {
        var old = _lengthChanged;
        _lengthChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }

    public Task<ChunkReadResult> ReadAsync(ulong offset, int length) => LockedAsync(() => Read(offset, length));

    public Task<long> SyncAsync() => LockedAsync(() =>
    {
        try
        {
            Flush();
        }
        catch (IOException error)
        {
            throw Classify(error, $"chunk {Id}: sync");
        }
        _durableSlot = _latestSlot;
        DropDurablePages(_length);
        return _length;
    });

    public Task<long> SealAsync(ulong epoch, ulong length) => LockedAsync(() => Seal(epoch, length));

    public Task<long> SealAtCurrentLengthAsync(ulong epoch) => LockedAsync(() => Seal(epoch, (ulong)_length));

    /// <summary>Removes the chunk's files; the meta file goes first, so a crash leaves only leftovers.</summary>
    public Task DeleteAsync() => LockedAsync(() =>
    {
        _deleted = true;
        SignalLengthChanged();
        File.Delete(_files.Meta);
        _data.Dispose();
        _checksumFile.Dispose();
        File.Delete(_files.Data);
        File.Delete(_files.Checksums);
        return true;
    });

    public void Dispose()
    {
        _data.Dispose();
        _checksumFile.Dispose();
        _lock.Dispose();
    }

    private long Append(ulong epoch, ulong expectedOffset, ReadOnlySpan<byte> data, bool fua)
    {
        CheckEpoch(epoch, "append");
        if (_meta.Sealed)
        {
            throw new ChunkStoreException(ChunkError.Sealed, $"chunk {Id}: sealed at length {_length}, append refused", _length);
        }
        if (expectedOffset != (ulong)_length)
        {
            throw new ChunkStoreException(ChunkError.WrongOffset, $"chunk {Id}: append at offset {expectedOffset} but chunk length is {_length}", _length);
        }
        if (_length + data.Length > _meta.MaxLength)
        {
            throw new ChunkStoreException(ChunkError.ChunkFull,
                $"chunk {Id}: append of {data.Length} bytes at {_length} passes the chunk's max length {_meta.MaxLength}", _length);
        }
        var update = _checksums.PlanAppend(_length, data);
        var entryBytes = ChecksumFileLayout.EncodeEntries(update.FullBlocks);
        var oldLength = _length;
        var newLength = oldLength + data.Length;
        var slot = 1 - _durableSlot;
        EnsureSpace(data.Length + entryBytes.Length, "append");
        RaiseEpoch(epoch);

        // Order: data, then the CRCs of blocks that became full, then the tail slot that makes the
        // new length visible to recovery. A crash anywhere in between recovers to an earlier length.
        try
        {
            RandomAccess.Write(_data, data, oldLength);
            if (entryBytes.Length > 0)
            {
                RandomAccess.Write(_checksumFile, entryBytes, ChecksumFileLayout.EntryOffset(update.FirstFull));
            }
            RandomAccess.Write(_checksumFile, ChecksumFileLayout.EncodeSlot(new TailSlot(newLength, update.TailCrc)), ChecksumFileLayout.SlotOffset(slot));
            if (fua)
            {
                Flush();
            }
        }
        catch (IOException error)
        {
            RollBack();
            throw Classify(error, $"chunk {Id}: append of {data.Length} bytes at {oldLength}");
        }
        _checksums.Apply(update);
        _latestSlot = slot;
        if (fua)
        {
            _durableSlot = slot;
            DropDurablePages(newLength);
        }
        Volatile.Write(ref _length, newLength);
        StartWriteback(newLength);
        SignalLengthChanged();
        return newLength;
    }

    /// <summary>Starts (does not wait for) the disk writes of the whole pages appended since the last step, once a step's worth is there.</summary>
    private void StartWriteback(long length)
    {
        var end = PageCache.WholePagesBelow(length);
        if (end - _writebackBelow < WritebackStepBytes)
        {
            return;
        }
        var error = PageCache.StartWriteback(_data, _writebackBelow, end - _writebackBelow);
        if (error != 0)
        {
            _log.LogDebug("Chunk {ChunkId}: starting writeback of [{Start}, {End}) failed (errno {Errno})", Id, _writebackBelow, end, error);
        }
        _writebackBelow = end;
    }

    private ChunkReadResult Read(ulong offset, int length)
    {
        if (offset > (ulong)_length)
        {
            throw new ChunkStoreException(ChunkError.BeyondEnd, $"chunk {Id}: read offset {offset} is past the chunk length {_length}", _length);
        }
        var start = (long)offset;
        var end = Math.Min(_length, start + length);
        if (end == start)
        {
            return new ChunkReadResult(ReadOnlyMemory<byte>.Empty, _length, _meta.Sealed);
        }
        var blockSize = _checksums.BlockSize;
        var firstBlock = (int)(start / blockSize);
        var lastBlock = (int)((end - 1) / blockSize);
        var alignedStart = (long)firstBlock * blockSize;
        var alignedEnd = Math.Min((long)(lastBlock + 1) * blockSize, _length);
        var buffer = ReadVerified(alignedStart, alignedEnd);
        return new ChunkReadResult(buffer.AsMemory((int)(start - alignedStart), (int)(end - start)), _length, _meta.Sealed);
    }

    private long Seal(ulong epoch, ulong length)
    {
        CheckEpoch(epoch, "seal");
        if (_meta.Sealed)
        {
            if (length != (ulong)_length)
            {
                throw new ChunkStoreException(ChunkError.Sealed, $"chunk {Id}: already sealed at length {_length}, seal at {length} refused", _length);
            }
            RaiseEpoch(epoch);
            return _length;
        }
        if (length > (ulong)_length)
        {
            throw new ChunkStoreException(ChunkError.BeyondEnd, $"chunk {Id}: seal length {length} is past the chunk length {_length}", _length);
        }
        try
        {
            if (length < (ulong)_length)
            {
                Truncate((long)length);
            }
            Flush();
            _durableSlot = _latestSlot;
            SaveMeta(_meta with { Epoch = Math.Max(epoch, _meta.Epoch), Sealed = true, SealedLength = _length });
            DropDurablePages(_length);
        }
        catch (IOException error)
        {
            throw Classify(error, $"chunk {Id}: seal at {length}");
        }
        SignalLengthChanged();
        _log.LogInformation("Sealed chunk {ChunkId} at length {Length} with epoch {Epoch}", Id, _length, _meta.Epoch);
        return _length;
    }

    /// <summary>
    /// Cuts the chunk to a shorter length; the cut block's CRC is recomputed from verified bytes. The
    /// new tail slot is made durable before the files shrink, so a crash leaves one verifiable state.
    /// </summary>
    private void Truncate(long length)
    {
        var blockSize = _checksums.BlockSize;
        var full = (int)(length / blockSize);
        var tailLength = (int)(length % blockSize);
        var tailCrc = 0u;
        if (tailLength > 0)
        {
            var blockStart = (long)full * blockSize;
            var block = ReadVerified(blockStart, Math.Min(blockStart + blockSize, _length));
            tailCrc = Crc32C.Compute(block.AsSpan(0, tailLength));
        }
        var slot = 1 - _durableSlot;
        RandomAccess.Write(_checksumFile, ChecksumFileLayout.EncodeSlot(new TailSlot(length, tailCrc)), ChecksumFileLayout.SlotOffset(slot));
        Flush();
        _checksums.Truncate(full, tailCrc);
        _durableSlot = _latestSlot = slot;
        Volatile.Write(ref _length, length);
        _droppedBelow = Math.Min(_droppedBelow, PageCache.WholePagesBelow(length));
        _writebackBelow = Math.Min(_writebackBelow, PageCache.WholePagesBelow(length));
        RandomAccess.SetLength(_data, length);
        RandomAccess.SetLength(_checksumFile, ChecksumFileLayout.EntryOffset(full));
    }

    /// <summary>Reads [start, end) (block aligned at start) and checks every block against its CRC.</summary>
    private byte[] ReadVerified(long start, long end)
    {
        var buffer = new byte[end - start];
        var filled = 0;
        while (filled < buffer.Length)
        {
            var read = RandomAccess.Read(_data, buffer.AsSpan(filled), start + filled);
            if (read == 0)
            {
                throw new ChunkStoreException(ChunkError.Corrupt,
                    $"chunk {Id}: data file {_files.Data} ends at {start + filled}, before the chunk length {_length}", _length);
            }
            filled += read;
        }
        var blockSize = _checksums.BlockSize;
        for (var position = 0; position < buffer.Length; position += blockSize)
        {
            var block = (int)((start + position) / blockSize);
            var size = Math.Min(blockSize, buffer.Length - position);
            if (Crc32C.Compute(buffer.AsSpan(position, size)) != _checksums.CrcOf(block))
            {
                _log.LogError("Checksum mismatch in chunk {ChunkId} block {Block} at offset {Offset} ({Path})", Id, block, start + position, _files.Data);
                throw new ChunkStoreException(ChunkError.Corrupt,
                    $"chunk {Id}: checksum mismatch in block {block} at offset {start + position}", _length);
            }
        }
        return buffer;
    }

    private void CheckEpoch(ulong epoch, string operation)
    {
        if (epoch < _meta.Epoch)
        {
            throw new ChunkStoreException(ChunkError.StaleEpoch, $"chunk {Id}: {operation} with epoch {epoch} refused, chunk epoch is {_meta.Epoch}", _length);
        }
    }

    /// <summary>Persists a higher epoch before anything of its writer lands, fencing older writers.</summary>
    private void RaiseEpoch(ulong epoch)
    {
        if (epoch <= _meta.Epoch)
        {
            return;
        }
        try
        {
            SaveMeta(_meta with { Epoch = epoch });
        }
        catch (IOException error)
        {
            throw Classify(error, $"chunk {Id}: persisting epoch {epoch}");
        }
    }

    private void SaveMeta(ChunkMeta meta)
    {
        meta.Save(_files.Meta);
        _meta = meta;
    }

    private void EnsureSpace(long bytes, string operation)
    {
        var available = Directory.AvailableBytes - _diskReserve;
        if (available < bytes)
        {
            throw new ChunkStoreException(ChunkError.DiskFull,
                $"chunk {Id}: {operation} needs {bytes} bytes but only {Math.Max(0, available)} are free in {Directory.Path} (reserve {_diskReserve})", _length);
        }
    }

    private void Flush()
    {
        RandomAccess.FlushToDisk(_data);
        RandomAccess.FlushToDisk(_checksumFile);
    }

    /// <summary>
    /// With <see cref="DropBehind"/>, drops the data file's whole pages below <paramref name="durableLength"/>
    /// (just flushed, so clean) from the page cache. The page holding the tail stays, so the next append
    /// never reads it back from disk. Freed pages are reused for new appends: new page-cache pages cost
    /// several times more than reused ones on VMs that hand free memory back to their host.
    /// </summary>
    private void DropDurablePages(long durableLength)
    {
        if (!_dropBehind)
        {
            return;
        }
        var end = PageCache.WholePagesBelow(durableLength);
        if (end <= _droppedBelow)
        {
            return;
        }
        var error = PageCache.Drop(_data, _droppedBelow, end - _droppedBelow);
        if (error != 0)
        {
            _log.LogDebug("Chunk {ChunkId}: dropping pages [{Start}, {End}) from the page cache failed (errno {Errno})", Id, _droppedBelow, end, error);
            return;
        }
        _droppedBelow = end;
    }

    /// <summary>Puts the files back to the last acknowledged state after a failed write.</summary>
    private void RollBack()
    {
        try
        {
            RandomAccess.SetLength(_data, _length);
            RandomAccess.SetLength(_checksumFile, ChecksumFileLayout.EntryOffset(_checksums.FullCount));
            var slot = 1 - _durableSlot;
            RandomAccess.Write(_checksumFile, ChecksumFileLayout.EncodeSlot(new TailSlot(_length, _checksums.TailCrc)), ChecksumFileLayout.SlotOffset(slot));
            _latestSlot = slot;
        }
        catch (IOException error)
        {
            // Memory still holds the acknowledged state; the next append overwrites the tail, and
            // restart recovery picks the newest slot that verifies.
            _log.LogCritical(error, "Chunk {ChunkId}: could not roll back a failed append to length {Length}", Id, _length);
        }
    }

    private async Task<T> LockedAsync<T>(Func<T> action)
    {
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_deleted)
            {
                throw new ChunkStoreException(ChunkError.NotFound, $"chunk {Id} not found (deleted)");
            }
            return action();
        }
        finally
        {
            _lock.Release();
        }
    }

    private static SafeFileHandle OpenFile(string path, FileMode mode) =>
        File.OpenHandle(path, mode, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);

    internal static ChunkStoreException Classify(IOException error, string context) => DiskErrors.IsDiskFull(error)
        ? new ChunkStoreException(ChunkError.DiskFull, $"{context}: no space left on device", inner: error)
        : new ChunkStoreException(ChunkError.IoError, $"{context}: {error.Message}", inner: error);
}
