using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// A sealed chunk being copied in from a peer: bytes go to temp files and the block checksums are
/// computed as they arrive; <see cref="Complete"/> makes both durable, renames them into place and
/// writes the meta file last (the commit point). Until then the chunk does not exist here.
/// </summary>
internal sealed class IncomingChunk : IDisposable
{
    private readonly ChunkStore _store;
    private readonly ChunkFiles _files;
    private readonly SafeFileHandle _data;
    private readonly List<uint> _checksums = [];
    private readonly int _blockSize;
    private uint _blockState = Crc32C.Begin();
    private int _blockFilled;
    private long _length;
    private uint _wholeState = Crc32C.Begin();
    private bool _done;

    public IncomingChunk(ChunkStore store, DataDirectory directory, ulong chunkId)
    {
        _store = store;
        Directory = directory;
        ChunkId = chunkId;
        _blockSize = store.Options.BlockSize;
        _files = new ChunkFiles(directory.ChunksPath, chunkId);
        try
        {
            _data = File.OpenHandle(_files.CopyData, FileMode.Create, FileAccess.ReadWrite);
        }
        catch
        {
            store.Release(chunkId);
            throw;
        }
    }

    public DataDirectory Directory { get; }

    public ulong ChunkId { get; }

    public long Length => _length;

    /// <summary>CRC32C of every byte written so far (the whole chunk once complete).</summary>
    public uint WholeCrc => Crc32C.Finish(_wholeState);

    /// <summary>Refuses the copy up front when the data dir cannot hold <paramref name="bytes"/> more.</summary>
    public void EnsureSpace(long bytes)
    {
        var needed = bytes + ChecksumFileLayout.EntryOffset((int)(bytes / _blockSize) + 1) + _store.Options.DiskReserveBytes;
        if (Directory.AvailableBytes < needed)
        {
            throw new ChunkStoreException(ChunkError.DiskFull, $"chunk {ChunkId}: copy of {bytes} bytes does not fit in {Directory.Path}");
        }
    }

    public void Write(ReadOnlySpan<byte> piece)
    {
        try
        {
            RandomAccess.Write(_data, piece, _length);
        }
        catch (IOException error)
        {
            throw Chunk.Classify(error, $"chunk {ChunkId}: copy write at {_length}");
        }
        _length += piece.Length;
        _wholeState = Crc32C.Update(_wholeState, piece);
        while (!piece.IsEmpty)
        {
            var take = Math.Min(_blockSize - _blockFilled, piece.Length);
            _blockState = Crc32C.Update(_blockState, piece[..take]);
            _blockFilled += take;
            piece = piece[take..];
            if (_blockFilled == _blockSize)
            {
                _checksums.Add(Crc32C.Finish(_blockState));
                _blockState = Crc32C.Begin();
                _blockFilled = 0;
            }
        }
    }

    public ChunkState Complete(ulong epoch, ILogger log)
    {
        try
        {
            var tailCrc = _blockFilled > 0 ? Crc32C.Finish(_blockState) : 0u;
            RandomAccess.FlushToDisk(_data);
            _data.Dispose();
            using (var checksums = File.OpenHandle(_files.CopyChecksums, FileMode.Create, FileAccess.ReadWrite))
            {
                var slot = ChecksumFileLayout.EncodeSlot(new TailSlot(_length, tailCrc));
                RandomAccess.Write(checksums, [.. slot, .. slot, .. ChecksumFileLayout.EncodeEntries([.. _checksums])], 0);
                RandomAccess.FlushToDisk(checksums);
            }
            File.Move(_files.CopyData, _files.Data, overwrite: true);
            File.Move(_files.CopyChecksums, _files.Checksums, overwrite: true);
            new ChunkMeta(epoch, Sealed: true, SealedLength: _length, MaxLength: Math.Max(_length, 1), _blockSize).Save(_files.Meta);
        }
        catch (IOException error)
        {
            throw Chunk.Classify(error, $"chunk {ChunkId}: installing copy of {_length} bytes");
        }
        _store.Install(this, _files);
        _done = true;
        log.LogInformation("Installed copied chunk {ChunkId}: {Length} bytes, sealed, epoch {Epoch}", ChunkId, _length, epoch);
        return new ChunkState(ChunkId, _length, true, epoch, Math.Max(_length, 1));
    }

    /// <summary>Abandons an unfinished copy: temp files go, the id is free again.</summary>
    public void Dispose()
    {
        _data.Dispose();
        if (_done)
        {
            return;
        }
        File.Delete(_files.CopyData);
        File.Delete(_files.CopyChecksums);
        if (!File.Exists(_files.Meta))
        {
            File.Delete(_files.Data);
            File.Delete(_files.Checksums);
        }
        _store.Release(ChunkId);
    }
}
