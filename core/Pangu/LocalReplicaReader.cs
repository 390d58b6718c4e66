using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Reads replicas kept by a chunk server on this node straight from its files, skipping the
/// gRPC round trip. Files are those of the chunk server's store: <c>DIR/chunks/ID.data</c>, <c>ID.crc</c>
/// (two 16-byte tail slots, then a little-endian uint32 CRC32C per full block) and <c>ID.meta</c> (JSON with
/// the block size).
/// Only whole blocks below the length the caller knows to be acknowledged are served: their bytes and
/// CRC entries were written before the append was acknowledged and never change while the chunk exists.
/// Every block is verified against its CRC entry. Anything else (the partial tail block, a missing or
/// short file, a checksum mismatch, any I/O error) returns false, and the caller reads through the chunk
/// server, which reports the replica and fails over exactly as without this shortcut.
/// Files stay open between reads; those of deleted chunks are closed within seconds (<see cref="Sweep"/>).
/// </summary>
public sealed class LocalReplicaReader : IDisposable
{
    private const int SlotsBytes = 32;
    private const int EntryBytes = 4;
    private const int MaxOpenChunks = 256;
    /// <summary>Growth cap of the in-memory CRC entries (a 64 MiB chunk of 4 KiB blocks has 16,384).</summary>
    private const int MaxCachedEntries = 1 << 16;
    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(2);

    private readonly IReadOnlyDictionary<string, string> _dataDirsByAddress;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<(string Address, ulong Chunk), OpenReplica> _open = new();
    private long _served;
    private long _declined;
    private readonly Timer _sweeper;

    /// <param name="dataDirsByAddress">gRPC address of a chunk server on this node → its data directory.</param>
    public LocalReplicaReader(IReadOnlyDictionary<string, string> dataDirsByAddress, ILogger logger)
    {
        _dataDirsByAddress = dataDirsByAddress;
        _logger = logger;
        _sweeper = new Timer(_ => Sweep(), null, SweepInterval, SweepInterval);
    }

    /// <summary>Chunks whose files are open.</summary>
    public int OpenChunks => _open.Count;

    /// <summary>Reads served from local files.</summary>
    public long Served => Interlocked.Read(ref _served);

    /// <summary>Reads of a local replica handed back to the gRPC path.</summary>
    public long Declined => Interlocked.Read(ref _declined);

    public bool Covers(PanguReplica replica) => _dataDirsByAddress.ContainsKey(replica.Address);

    /// <summary>
    /// Fills all of destination from offset of the replica when every block it touches is whole, below
    /// acknowledgedLength, and verifies. Returns false (nothing to trust in destination) otherwise.
    /// </summary>
    public bool TryRead(PanguReplica replica, ulong chunkId, long acknowledgedLength, long offset, Span<byte> destination)
    {
        if (!_dataDirsByAddress.TryGetValue(replica.Address, out var dataDir) || destination.Length == 0 || offset < 0)
        {
            return false;
        }
        if (_open.Count > MaxOpenChunks)
        {
            // Crude bound on open handles: start over; a reader racing with this falls back to gRPC once.
            CloseAll();
        }
        OpenReplica? file = null;
        try
        {
            file = _open.GetOrAdd((replica.Address, chunkId), static (key, dir) => OpenReplica.Open(dir, key.Chunk), dataDir);
            if (file.Read(acknowledgedLength, offset, destination))
            {
                Interlocked.Increment(ref _served);
                return true;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException or JsonException or InvalidDataException)
        {
            _logger.LogDebug("local read of chunk {ChunkId} at {Offset} from {Dir} failed: {Error}", chunkId, offset, dataDir, e.Message);
            Forget(replica.Address, chunkId, file);
        }
        Interlocked.Increment(ref _declined);
        return false;
    }

    /// <summary>
    /// An open handle keeps a deleted chunk's blocks allocated on the chunk server's disk, so handles of
    /// chunks whose meta file is gone (the commit point of a chunk's existence) are closed every few seconds.
    /// </summary>
    private void Sweep()
    {
        foreach (var (key, file) in _open)
        {
            if (!File.Exists(file.MetaPath))
            {
                Forget(key.Address, key.Chunk, file);
            }
        }
    }

    private void Forget(string address, ulong chunkId, OpenReplica? file)
    {
        if (file is not null && _open.TryRemove(KeyValuePair.Create((address, chunkId), file)))
        {
            file.Dispose();
        }
    }

    /// <summary>Closes the files of a chunk (e.g. after its replica was found bad or the chunk deleted).</summary>
    public void Forget(ulong chunkId)
    {
        foreach (var key in _open.Keys.Where(k => k.Chunk == chunkId).ToArray())
        {
            if (_open.TryRemove(key, out var file))
            {
                file.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _sweeper.Dispose();
        CloseAll();
    }

    private void CloseAll()
    {
        foreach (var key in _open.Keys.ToArray())
        {
            if (_open.TryRemove(key, out var file))
            {
                file.Dispose();
            }
        }
    }

    /// <summary>The open data and CRC files of one replica.</summary>
    private sealed class OpenReplica : IDisposable
    {
        private readonly SafeFileHandle _data;
        private readonly SafeFileHandle _crc;
        private readonly int _blockSize;
        private readonly object _crcGate = new();
        private KnownCrcs _crcs = new([], 0);

        public string MetaPath { get; }

        private OpenReplica(string metaPath, SafeFileHandle data, SafeFileHandle crc, int blockSize)
        {
            MetaPath = metaPath;
            _data = data;
            _crc = crc;
            _blockSize = blockSize;
        }

        public static OpenReplica Open(string dataDir, ulong chunkId)
        {
            var stem = Path.Combine(dataDir, "chunks", chunkId.ToString("x16", CultureInfo.InvariantCulture));
            using var meta = JsonDocument.Parse(File.ReadAllBytes(stem + ".meta"));
            var blockSize = meta.RootElement.GetProperty("blockSize").GetInt32();
            if (blockSize < 512)
            {
                throw new InvalidDataException($"chunk {chunkId}: block size {blockSize} in {stem}.meta");
            }
            var data = File.OpenHandle(stem + ".data", FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            try
            {
                var crc = File.OpenHandle(stem + ".crc", FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                return new OpenReplica(stem + ".meta", data, crc, blockSize);
            }
            catch
            {
                data.Dispose();
                throw;
            }
        }

        public bool Read(long acknowledgedLength, long offset, Span<byte> destination)
        {
            var wholeBlocks = acknowledgedLength / _blockSize;
            var firstBlock = offset / _blockSize;
            var endBlock = (offset + destination.Length + _blockSize - 1) / _blockSize;
            if (endBlock > wholeBlocks || endBlock - firstBlock > 1024)
            {
                return false;
            }
            var crcs = CrcEntriesCovering((int)endBlock, (int)wholeBlocks);
            if (crcs is null)
            {
                return false;
            }
            var blocks = (int)(endBlock - firstBlock);
            var alignedStart = firstBlock * _blockSize;
            var alignedLength = blocks * _blockSize;
            var aligned = alignedStart == offset && alignedLength == destination.Length;
            var buffer = aligned ? null : System.Buffers.ArrayPool<byte>.Shared.Rent(alignedLength);
            try
            {
                var span = aligned ? destination : buffer.AsSpan(0, alignedLength);
                if (!ReadExactly(_data, span, alignedStart))
                {
                    return false;
                }
                for (var i = 0; i < blocks; i++)
                {
                    if (Crc32C.Compute(span.Slice(i * _blockSize, _blockSize)) != crcs[(int)firstBlock + i])
                    {
                        return false;
                    }
                }
                if (!aligned)
                {
                    span.Slice((int)(offset - alignedStart), destination.Length).CopyTo(destination);
                }
                return true;
            }
            finally
            {
                if (buffer is not null)
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }

        /// <summary>
        /// The CRC entries of blocks [0, <paramref name="endBlock"/>), from memory when known, else read from the
        /// CRC file up to <paramref name="wholeBlocks"/> (every block below the acknowledged length). An entry of a
        /// whole block below the acknowledged length was written before that length was acknowledged and never
        /// changes while the chunk exists (a seal cuts only past the acknowledged length), so it is read once.
        /// Null when the file holds fewer entries than that.
        /// </summary>
        private uint[]? CrcEntriesCovering(int endBlock, int wholeBlocks)
        {
            var known = Volatile.Read(ref _crcs);
            if (known.Count >= endBlock)
            {
                return known.Values;
            }
            lock (_crcGate)
            {
                known = _crcs;
                if (known.Count >= endBlock)
                {
                    return known.Values;
                }
                var values = known.Values;
                if (values.Length < wholeBlocks)
                {
                    values = new uint[Math.Max(wholeBlocks, Math.Min(2 * values.Length, MaxCachedEntries))];
                    known.Values.AsSpan(0, known.Count).CopyTo(values);
                }
                var missing = wholeBlocks - known.Count;
                var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(missing * EntryBytes);
                try
                {
                    if (!ReadExactly(_crc, bytes.AsSpan(0, missing * EntryBytes), SlotsBytes + (long)known.Count * EntryBytes))
                    {
                        return null;
                    }
                    for (var i = 0; i < missing; i++)
                    {
                        values[known.Count + i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i * EntryBytes));
                    }
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
                }
                // Entries below a published count are never written again; readers of an older snapshot see only those.
                Volatile.Write(ref _crcs, new KnownCrcs(values, wholeBlocks));
                return values;
            }
        }

        private static bool ReadExactly(SafeFileHandle file, Span<byte> target, long offset)
        {
            var done = 0;
            while (done < target.Length)
            {
                var n = RandomAccess.Read(file, target[done..], offset + done);
                if (n <= 0)
                {
                    return false;
                }
                done += n;
            }
            return true;
        }

        public void Dispose()
        {
            _data.Dispose();
            _crc.Dispose();
        }

        /// <summary>CRC entries of blocks [0, Count) of the replica; Values may be longer.</summary>
        private sealed record KnownCrcs(uint[] Values, int Count);
    }
}
