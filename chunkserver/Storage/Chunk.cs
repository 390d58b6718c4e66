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

    private Chunk(ulong id, DataDirectory directory, ChunkFiles files, SafeFileHandle data, SafeFileHandle checksumFile,
        BlockChecksums checksums, ChunkMeta meta, long length, long diskReserve, ILogger log)
    {
        Id = id;
        Directory = directory;
        _files = files;
        _data = data;
        _checksumFile = checksumFile;
        _checksums = checksums;
        _meta = meta;
        _length = length;
        _diskReserve = diskReserve;
        _log = log;
    }

    public ulong Id { get; }

    public DataDirectory Directory { get; }

    /// <summary>Unlocked snapshot (fields are read atomically); for inventories and metrics.</summary>
    public ChunkState State => new(Id, Volatile.Read(ref _length), _meta.Sealed, _meta.Epoch, _meta.MaxLength);

    /// <summary>Bytes this chunk holds on disk (data and checksums).</summary>
    public long DiskBytes => Volatile.Read(ref _length) + (long)_checksums.Count * BlockChecksums.EntrySize;

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
            var meta = new ChunkMeta(epoch, Sealed: false, SealedLength: 0, maxLength);
            meta.Save(files.Meta);
            return new Chunk(id, directory, files, data, checksums, new BlockChecksums(blockSize, []), meta, 0, diskReserve, log);
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
    public static Chunk Open(DataDirectory directory, ChunkFiles files, int blockSize, int maxAppendBytes, long diskReserve, ILogger log)
    {
        var meta = ChunkMeta.Load(files.Meta);
        var data = OpenFile(files.Data, FileMode.OpenOrCreate);
        try
        {
            var checksumFile = OpenFile(files.Checksums, FileMode.OpenOrCreate);
            try
            {
                var (length, entries) = ChunkRecovery.Recover(files.ChunkId, meta, data, checksumFile, blockSize, maxAppendBytes, log);
                return new Chunk(files.ChunkId, directory, files, data, checksumFile, new BlockChecksums(blockSize, entries), meta, length, diskReserve, log);
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

    public Task<long> AppendAsync(ulong epoch, ulong expectedOffset, ReadOnlyMemory<byte> data, bool fua) =>
        LockedAsync(() => Append(epoch, expectedOffset, data.Span, fua));

    public Task<ChunkReadResult> ReadAsync(ulong offset, int length) => LockedAsync(() => Read(offset, length));

    public Task<long> SyncAsync() => LockedAsync(() =>
    {
        Flush();
        return _length;
    });

    public Task<long> SealAsync(ulong epoch, ulong length) => LockedAsync(() => Seal(epoch, length));

    /// <summary>Removes the chunk's files; the meta file goes first, so a crash leaves only leftovers.</summary>
    public Task DeleteAsync() => LockedAsync(() =>
    {
        _deleted = true;
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
        var checksumBytes = BlockChecksums.Encode(update.Entries);
        EnsureSpace(data.Length + checksumBytes.Length, "append");
        RaiseEpoch(epoch);

        var oldLength = _length;
        try
        {
            RandomAccess.Write(_data, data, oldLength);
            RandomAccess.Write(_checksumFile, checksumBytes, (long)update.FirstBlock * BlockChecksums.EntrySize);
            if (fua)
            {
                Flush();
            }
        }
        catch (IOException error)
        {
            RollBack(oldLength);
            throw Classify(error, $"chunk {Id}: append of {data.Length} bytes at {oldLength}");
        }
        _checksums.Apply(update);
        Volatile.Write(ref _length, oldLength + data.Length);
        return _length;
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
            SaveMeta(_meta with { Epoch = Math.Max(epoch, _meta.Epoch), Sealed = true, SealedLength = _length });
        }
        catch (IOException error)
        {
            throw Classify(error, $"chunk {Id}: seal at {length}");
        }
        _log.LogInformation("Sealed chunk {ChunkId} at length {Length} with epoch {Epoch}", Id, _length, _meta.Epoch);
        return _length;
    }

    /// <summary>Cuts the chunk to a shorter length; the cut block's CRC is recomputed from verified bytes.</summary>
    private void Truncate(long length)
    {
        var blockSize = _checksums.BlockSize;
        var blocks = BlockChecksums.BlocksFor(length, blockSize);
        uint? tailCrc = null;
        if (length % blockSize != 0)
        {
            var blockStart = (long)(blocks - 1) * blockSize;
            var block = ReadVerified(blockStart, Math.Min(blockStart + blockSize, _length));
            tailCrc = Crc32C.Compute(block.AsSpan(0, (int)(length - blockStart)));
        }
        RandomAccess.SetLength(_data, length);
        _checksums.Truncate(blocks);
        if (tailCrc is { } crc)
        {
            _checksums.Set(blocks - 1, crc);
        }
        Volatile.Write(ref _length, length);
        RandomAccess.SetLength(_checksumFile, (long)blocks * BlockChecksums.EntrySize);
        if (tailCrc is { } tail)
        {
            RandomAccess.Write(_checksumFile, BlockChecksums.Encode([tail]), (long)(blocks - 1) * BlockChecksums.EntrySize);
        }
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
            if (block >= _checksums.Count || Crc32C.Compute(buffer.AsSpan(position, size)) != _checksums[block])
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

    /// <summary>Puts the files back to the last acknowledged state after a failed write.</summary>
    private void RollBack(long length)
    {
        try
        {
            RandomAccess.SetLength(_data, length);
            RandomAccess.SetLength(_checksumFile, (long)_checksums.Count * BlockChecksums.EntrySize);
            if (_checksums.Count > 0)
            {
                var last = _checksums.Count - 1;
                RandomAccess.Write(_checksumFile, BlockChecksums.Encode([_checksums[last]]), (long)last * BlockChecksums.EntrySize);
            }
        }
        catch (IOException error)
        {
            // Memory still holds the acknowledged state; the next append overwrites the tail, and
            // restart recovery cuts what does not verify.
            _log.LogCritical(error, "Chunk {ChunkId}: could not roll back a failed append to length {Length}", Id, length);
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
