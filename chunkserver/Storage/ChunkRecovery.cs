using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// Brings a chunk's data and checksum files back into agreement after a crash. An append writes the
/// data first and the checksums second, so a crash can leave data that no checksum covers, or a tail
/// block whose checksum still describes a shorter prefix. Recovery cuts the chunk back to the longest
/// length whose tail block verifies. It only looks at the blocks one append can touch: a mismatch
/// further back is corruption, not a torn write, and is left for reads and the scrubber to report.
/// </summary>
internal static class ChunkRecovery
{
    public static (long Length, List<uint> Checksums) Recover(ulong chunkId, ChunkMeta meta, SafeFileHandle data,
        SafeFileHandle checksumFile, int blockSize, int maxAppendBytes, ILogger log)
    {
        var dataLength = RandomAccess.GetLength(data);
        var entries = BlockChecksums.Decode(ReadAll(checksumFile));

        if (meta.Sealed)
        {
            return RecoverSealed(chunkId, meta, data, checksumFile, dataLength, entries, blockSize, log);
        }

        var blocks = Math.Min(BlockChecksums.BlocksFor(dataLength, blockSize), entries.Count);
        var length = Math.Min(dataLength, (long)blocks * blockSize);
        var window = maxAppendBytes / blockSize + 2;
        var verified = false;
        for (var tried = 0; blocks > 0 && tried < window; tried++)
        {
            var blockStart = (long)(blocks - 1) * blockSize;
            var bytes = ReadRange(data, blockStart, length);
            var prefix = LongestVerifiedPrefix(bytes, entries[blocks - 1]);
            if (prefix > 0)
            {
                length = blockStart + prefix;
                verified = true;
                break;
            }
            blocks--;
            length = blockStart;
        }
        if (!verified && blocks > 0)
        {
            log.LogError("Chunk {ChunkId}: no block near the tail verifies; leaving it as found ({DataLength} bytes) for reads to report", chunkId, dataLength);
            var covered = Math.Min(BlockChecksums.BlocksFor(dataLength, blockSize), entries.Count);
            return (Math.Min(dataLength, (long)covered * blockSize), entries.GetRange(0, covered));
        }

        var checksumBytes = (long)entries.Count * BlockChecksums.EntrySize;
        if (length != dataLength || blocks != entries.Count || RandomAccess.GetLength(checksumFile) != checksumBytes)
        {
            log.LogWarning("Chunk {ChunkId}: torn tail cut back from {DataLength} bytes / {Checksums} checksums to {Length} bytes / {Blocks} checksums",
                chunkId, dataLength, entries.Count, length, blocks);
            entries.RemoveRange(blocks, entries.Count - blocks);
            RandomAccess.SetLength(data, length);
            RandomAccess.SetLength(checksumFile, (long)blocks * BlockChecksums.EntrySize);
            RandomAccess.FlushToDisk(data);
            RandomAccess.FlushToDisk(checksumFile);
        }
        return (length, entries);
    }

    /// <summary>A sealed chunk was truncated before its meta said sealed, so its files should already match.</summary>
    private static (long Length, List<uint> Checksums) RecoverSealed(ulong chunkId, ChunkMeta meta, SafeFileHandle data,
        SafeFileHandle checksumFile, long dataLength, List<uint> entries, int blockSize, ILogger log)
    {
        var blocks = BlockChecksums.BlocksFor(meta.SealedLength, blockSize);
        if (dataLength < meta.SealedLength || entries.Count < blocks)
        {
            log.LogError("Sealed chunk {ChunkId}: files hold {DataLength} bytes / {Checksums} checksums, less than its sealed length {SealedLength}",
                chunkId, dataLength, entries.Count, meta.SealedLength);
            var covered = Math.Min(BlockChecksums.BlocksFor(dataLength, blockSize), entries.Count);
            return (Math.Min(dataLength, meta.SealedLength), entries.GetRange(0, covered));
        }
        if (dataLength > meta.SealedLength || entries.Count > blocks)
        {
            log.LogWarning("Sealed chunk {ChunkId}: cutting files back to the sealed length {SealedLength}", chunkId, meta.SealedLength);
            RandomAccess.SetLength(data, meta.SealedLength);
            RandomAccess.SetLength(checksumFile, (long)blocks * BlockChecksums.EntrySize);
            entries.RemoveRange(blocks, entries.Count - blocks);
        }
        return (meta.SealedLength, entries);
    }

    /// <summary>Length of the longest non-empty prefix of <paramref name="block"/> whose CRC equals <paramref name="crc"/>; 0 if none.</summary>
    private static int LongestVerifiedPrefix(ReadOnlySpan<byte> block, uint crc)
    {
        if (Crc32C.Compute(block) == crc)
        {
            return block.Length;
        }
        var state = Crc32C.Begin();
        var longest = 0;
        for (var i = 0; i < block.Length - 1; i++)
        {
            state = Crc32C.Update(state, block.Slice(i, 1));
            if (Crc32C.Finish(state) == crc)
            {
                longest = i + 1;
            }
        }
        return longest;
    }

    private static byte[] ReadAll(SafeFileHandle file) => ReadRange(file, 0, RandomAccess.GetLength(file));

    private static byte[] ReadRange(SafeFileHandle file, long start, long end)
    {
        var buffer = new byte[end - start];
        var filled = 0;
        while (filled < buffer.Length)
        {
            var read = RandomAccess.Read(file, buffer.AsSpan(filled), start + filled);
            if (read == 0)
            {
                break;
            }
            filled += read;
        }
        return filled == buffer.Length ? buffer : buffer[..filled];
    }
}
