using System.Collections.Concurrent;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Storage;

public sealed record ChunkStoreOptions
{
    public required IReadOnlyList<string> DataDirs { get; init; }
    public long ChunkSize { get; init; } = 64L << 20;
    public int BlockSize { get; init; } = 4096;
    /// <summary>Largest append and read payload.</summary>
    public int MaxIoBytes { get; init; } = 4 << 20;
    /// <summary>Space kept free on every data filesystem; writes that would eat into it are refused as disk-full.</summary>
    public long DiskReserveBytes { get; init; } = 1 << 20;
    /// <summary>
    /// How long an append that arrives ahead of the chunk's length (a pipelined append whose
    /// predecessor is still on its way) is held for the gap to fill before it is refused as wrong-offset.
    /// </summary>
    public TimeSpan AppendGapTimeout { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Farthest an append may arrive ahead of the chunk's length and still be held.</summary>
    public long MaxAppendGapBytes { get; init; } = 256L << 20;
}

/// <summary>
/// All chunks of this server, spread over one or more data dirs. Validates requests, finds the
/// chunk and lets it do the work under its own lock.
/// </summary>
public sealed class ChunkStore : IDisposable
{
    /// <summary>Hard upper bound on a chunk's max length (keeps block indexes in range).</summary>
    public const long MaxChunkLength = 1L << 40;

    private readonly ConcurrentDictionary<ulong, Chunk> _chunks = new();
    private readonly HashSet<ulong> _incoming = [];
    private readonly SortedSet<ulong> _lost = [];
    private readonly Lock _membership = new();
    private readonly IReadOnlyList<DataDirectory> _directories;
    private readonly ILogger _log;
    private readonly ILoggerFactory _loggers;

    private ChunkStore(ChunkStoreOptions options, IReadOnlyList<DataDirectory> directories, ILoggerFactory loggers)
    {
        Options = options;
        _directories = directories;
        _loggers = loggers;
        _log = loggers.CreateLogger<ChunkStore>();
    }

    public ChunkStoreOptions Options { get; }

    public int Count => _chunks.Count;

    /// <summary>Bytes held by chunk files (data and checksums).</summary>
    public long UsedBytes => _chunks.Values.Sum(chunk => chunk.DiskBytes);

    /// <summary>Total size of the distinct filesystems holding the data dirs.</summary>
    public long FilesystemBytes => _directories.DistinctBy(d => d.MountPoint).Sum(d => d.TotalBytes);

    public static ChunkStore Open(ChunkStoreOptions options, ILoggerFactory loggers)
    {
        if (options.DataDirs.Count == 0)
        {
            throw new ArgumentException("at least one data dir is required");
        }
        if (options.BlockSize < 512 || options.BlockSize > options.MaxIoBytes || options.MaxIoBytes % options.BlockSize != 0)
        {
            throw new ArgumentException($"block size {options.BlockSize} must be at least 512 and divide the max I/O size {options.MaxIoBytes}");
        }
        if (options.ChunkSize <= 0 || options.ChunkSize > MaxChunkLength)
        {
            throw new ArgumentException($"chunk size {options.ChunkSize} must be between 1 and {MaxChunkLength}");
        }
        var directories = options.DataDirs.Select(dir => new DataDirectory(dir)).ToList();
        var store = new ChunkStore(options, directories, loggers);
        try
        {
            store.LoadAll();
        }
        catch
        {
            store.Dispose();
            throw;
        }
        return store;
    }

    public ChunkState Create(ulong id, ulong epoch, ulong maxLength)
    {
        if (maxLength > MaxChunkLength)
        {
            throw new ChunkStoreException(ChunkError.InvalidArgument, $"chunk {id}: max length {maxLength} is above the limit {MaxChunkLength}");
        }
        var limit = maxLength == 0 ? Options.ChunkSize : (long)maxLength;
        lock (_membership)
        {
            if (_incoming.Contains(id))
            {
                throw new ChunkStoreException(ChunkError.AlreadyExists, $"chunk {id} is being copied from a peer");
            }
            if (_chunks.TryGetValue(id, out var existing))
            {
                var state = existing.State;
                if (epoch == state.Epoch)
                {
                    return state;
                }
                if (epoch < state.Epoch)
                {
                    throw new ChunkStoreException(ChunkError.StaleEpoch, $"chunk {id}: create with epoch {epoch} refused, chunk epoch is {state.Epoch}", state.Length);
                }
                throw new ChunkStoreException(ChunkError.AlreadyExists, $"chunk {id} already exists with epoch {state.Epoch} (create asked epoch {epoch})", state.Length);
            }
            var chunk = Chunk.Create(PickDirectory(), id, epoch, limit, Options.BlockSize, Options.DiskReserveBytes, _loggers.CreateLogger<Chunk>());
            _chunks[id] = chunk;
            _log.LogInformation("Created chunk {ChunkId} with epoch {Epoch} and max length {MaxLength} in {Dir}", id, epoch, limit, chunk.Directory.Path);
            return chunk.State;
        }
    }

    /// <summary>Appends at exactly <paramref name="expectedOffset"/> (see <see cref="Chunk.AppendAsync"/>); <paramref name="ct"/> drops it while held.</summary>
    public Task<long> AppendAsync(ulong id, ulong epoch, ulong expectedOffset, ReadOnlyMemory<byte> data, uint crc32c, bool fua, CancellationToken ct = default)
    {
        if (data.Length == 0)
        {
            throw new ChunkStoreException(ChunkError.InvalidArgument, $"chunk {id}: empty append");
        }
        if (data.Length > Options.MaxIoBytes)
        {
            throw new ChunkStoreException(ChunkError.TooLarge, $"chunk {id}: append of {data.Length} bytes is above the limit of {Options.MaxIoBytes}");
        }
        var actual = Crc32C.Compute(data.Span);
        if (actual != crc32c)
        {
            throw new ChunkStoreException(ChunkError.ChecksumMismatch,
                $"chunk {id}: append at {expectedOffset} carries crc32c {crc32c:x8} but its {data.Length} bytes have {actual:x8}");
        }
        return Get(id).AppendAsync(epoch, expectedOffset, data, fua, Options.AppendGapTimeout, Options.MaxAppendGapBytes, ct);
    }

    public Task<ChunkReadResult> ReadAsync(ulong id, ulong offset, uint length)
    {
        if (length > Options.MaxIoBytes)
        {
            throw new ChunkStoreException(ChunkError.TooLarge, $"chunk {id}: read of {length} bytes is above the limit of {Options.MaxIoBytes}");
        }
        return Get(id).ReadAsync(offset, (int)length);
    }

    public Task<long> SyncAsync(ulong id) => Get(id).SyncAsync();

    /// <summary>Whether the chunk drops its durable pages from the page cache (<see cref="Chunk.DropBehind"/>).</summary>
    public void SetDropBehind(ulong id, bool dropBehind) => Get(id).DropBehind = dropBehind;

    public Task<long> SealAsync(ulong id, ulong epoch, ulong length) => Get(id).SealAsync(epoch, length);

    /// <summary>Seals the chunk at its present length (nothing cut); a sealed chunk just reports its length.</summary>
    public Task<long> SealAtCurrentLengthAsync(ulong id, ulong epoch) => Get(id).SealAtCurrentLengthAsync(epoch);

    public Task<ChunkState> InfoAsync(ulong id) => Get(id).InfoAsync();

    /// <summary>How far the chunk's appended bytes were handed to writeback (<see cref="Chunk.WritebackBelow"/>).</summary>
    internal long WritebackBelow(ulong id) => Get(id).WritebackBelow;

    /// <summary>Raises the chunk's epoch to <paramref name="epoch"/> (fencing older writers) and returns its state.</summary>
    public Task<ChunkState> FenceAsync(ulong id, ulong epoch) => Get(id).FenceAsync(epoch);

    public async Task DeleteAsync(ulong id)
    {
        var chunk = Get(id);
        await chunk.DeleteAsync().ConfigureAwait(false);
        lock (_membership)
        {
            _chunks.TryRemove(KeyValuePair.Create(id, chunk));
        }
        chunk.Dispose();
        _log.LogInformation("Deleted chunk {ChunkId}", id);
    }

    public bool Contains(ulong id) => _chunks.ContainsKey(id);

    /// <summary>
    /// Checks every data dir is still there (<see cref="DataDirectory.CheckPresent"/>). The chunks of a dir found
    /// gone stop being served (their handles may still reach the old files) and are reported as lost from then on.
    /// </summary>
    public IReadOnlyList<ulong> CheckDataDirectories()
    {
        foreach (var directory in _directories.Where(d => !d.Lost))
        {
            if (directory.CheckPresent())
            {
                continue;
            }
            List<Chunk> gone;
            lock (_membership)
            {
                gone = _chunks.Values.Where(c => c.Directory == directory).ToList();
                foreach (var chunk in gone)
                {
                    _chunks.TryRemove(KeyValuePair.Create(chunk.Id, chunk));
                    _lost.Add(chunk.Id);
                }
            }
            foreach (var chunk in gone)
            {
                chunk.Dispose();
            }
            _log.LogCritical("Data directory {Dir} is gone or unreadable: its {Count} chunks are reported lost to the master", directory.Path, gone.Count);
        }
        lock (_membership)
        {
            return [.. _lost];
        }
    }

    public int LostCount
    {
        get
        {
            lock (_membership)
            {
                return _lost.Count;
            }
        }
    }

    /// <summary>Forgets lost chunks the master asked to delete (their files are unreachable anyway).</summary>
    public bool ForgetLost(ulong id)
    {
        lock (_membership)
        {
            return _lost.Remove(id);
        }
    }

    public IReadOnlyList<ChunkState> Inventory() => [.. _chunks.Values.Select(chunk => chunk.State).OrderBy(state => state.Id)];

    /// <summary>
    /// Reserves <paramref name="id"/> for a copy from a peer. Returns null when the chunk already exists
    /// sealed at <paramref name="expectedLength"/> (0 = any), so a repeated copy is a no-op.
    /// </summary>
    internal IncomingChunk? BeginIncoming(ulong id, ulong expectedLength, out ChunkState? existing)
    {
        lock (_membership)
        {
            existing = null;
            if (_chunks.TryGetValue(id, out var chunk))
            {
                var state = chunk.State;
                if (state.Sealed && (expectedLength == 0 || (ulong)state.Length == expectedLength))
                {
                    existing = state;
                    return null;
                }
                throw new ChunkStoreException(ChunkError.AlreadyExists,
                    $"chunk {id} already exists here (length {state.Length}, sealed {state.Sealed}); copy refused", state.Length);
            }
            if (!_incoming.Add(id))
            {
                throw new ChunkStoreException(ChunkError.AlreadyExists, $"chunk {id} is already being copied");
            }
            return new IncomingChunk(this, PickDirectory(), id);
        }
    }

    internal void Install(IncomingChunk incoming, ChunkFiles files)
    {
        lock (_membership)
        {
            var chunk = Chunk.Open(incoming.Directory, files, Options.DiskReserveBytes, _loggers.CreateLogger<Chunk>());
            _chunks[incoming.ChunkId] = chunk;
            _incoming.Remove(incoming.ChunkId);
        }
    }

    internal void Release(ulong id)
    {
        lock (_membership)
        {
            _incoming.Remove(id);
        }
    }

    public void Dispose()
    {
        foreach (var chunk in _chunks.Values)
        {
            chunk.Dispose();
        }
        _chunks.Clear();
    }

    private Chunk Get(ulong id) => _chunks.TryGetValue(id, out var chunk)
        ? chunk
        : throw new ChunkStoreException(ChunkError.NotFound, $"chunk {id} not found");

    /// <summary>New chunks go to the data dir with the most free space.</summary>
    private DataDirectory PickDirectory() => _directories.Where(d => !d.Lost).MaxBy(d => d.AvailableBytes)
        ?? throw new ChunkStoreException(ChunkError.IoError, "every data directory of this chunk server is gone");

    private void LoadAll()
    {
        foreach (var directory in _directories)
        {
            foreach (var path in Directory.GetFiles(directory.ChunksPath))
            {
                var name = Path.GetFileName(path);
                if (!ChunkFiles.TryParseId(name, out var id))
                {
                    continue;
                }
                var files = new ChunkFiles(directory.ChunksPath, id);
                if (name.EndsWith(ChunkFiles.MetaExtension, StringComparison.Ordinal))
                {
                    LoadChunk(directory, files);
                }
                else if (!File.Exists(files.Meta))
                {
                    _log.LogWarning("Removing leftover file {Path} (no meta file: an interrupted create, copy or delete)", path);
                    File.Delete(path);
                }
            }
            foreach (var path in Directory.GetFiles(directory.ChunksPath, "*.tmp").Concat(Directory.GetFiles(directory.ChunksPath, "*.copying")))
            {
                File.Delete(path);
            }
        }
        _log.LogInformation("Loaded {Count} chunks from {Dirs}", _chunks.Count, string.Join(",", _directories.Select(d => d.Path)));
    }

    private void LoadChunk(DataDirectory directory, ChunkFiles files)
    {
        if (_chunks.TryGetValue(files.ChunkId, out var duplicate))
        {
            _log.LogError("Chunk {ChunkId} exists in both {First} and {Second}; keeping the first", files.ChunkId, duplicate.Directory.Path, directory.Path);
            return;
        }
        try
        {
            _chunks[files.ChunkId] = Chunk.Open(directory, files, Options.DiskReserveBytes, _loggers.CreateLogger<Chunk>());
        }
        catch (Exception error) when (error is IOException or InvalidDataException or System.Text.Json.JsonException)
        {
            // One unreadable chunk must not keep the server from serving the others; its files stay for inspection.
            _log.LogError(error, "Chunk {ChunkId} in {Dir} cannot be loaded; skipping it", files.ChunkId, directory.Path);
        }
    }
}
