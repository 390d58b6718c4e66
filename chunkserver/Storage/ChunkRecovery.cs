using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>What recovery found: the chunk's length, its checksums, and the tail slot that describes it.</summary>
internal sealed record RecoveredChunk(long Length, List<uint> FullBlocks, uint TailCrc, int Slot);

/// <summary>
/// Brings a chunk's data and checksum files back into agreement after a crash. An append writes the
/// data, then the CRCs of blocks it filled, then a tail slot with the new length; a crash can leave
/// data or CRCs that no slot describes yet. Recovery takes the longest tail slot whose tail block and
/// last full block verify against the data, and cuts both files back to it. A sealed chunk keeps its
/// sealed length. When no slot verifies, that is corruption rather than a torn write: the chunk is
/// left as found and reads report it.
/// </summary>
internal static class ChunkRecovery
{
    public static RecoveredChunk Recover(ulong chunkId, ChunkMeta meta, SafeFileHandle data, SafeFileHandle checksumFile, int blockSize, ILogger log)
    {
        var dataLength = RandomAccess.GetLength(data);
        var file = ReadRange(checksumFile, 0, RandomAccess.GetLength(checksumFile));
        var slots = new TailSlot?[]
        {
            ChecksumFileLayout.DecodeSlot(file.AsSpan(0, Math.Min(file.Length, ChecksumFileLayout.SlotSize))),
            file.Length >= ChecksumFileLayout.HeaderSize ? ChecksumFileLayout.DecodeSlot(file.AsSpan(ChecksumFileLayout.SlotSize, ChecksumFileLayout.SlotSize)) : null,
        };
        var entries = file.Length > ChecksumFileLayout.HeaderSize
            ? ChecksumFileLayout.DecodeEntries(file.AsSpan(ChecksumFileLayout.HeaderSize))
            : [];
        var candidates = Enumerable.Range(0, 2)
            .Where(i => slots[i] is { } slot && (!meta.Sealed || slot.Length == meta.SealedLength))
            .OrderByDescending(i => slots[i]!.Value.Length)
            .ToList();

        foreach (var index in candidates)
        {
            var slot = slots[index]!.Value;
            if (Verifies(slot, data, dataLength, entries, blockSize))
            {
                return Adopt(chunkId, slot, index, data, checksumFile, dataLength, file.Length, entries, blockSize, log);
            }
        }

        // Corruption, not a torn write: keep the newest state the files can hold, unverified.
        var fallback = candidates.FirstOrDefault(i => slots[i]!.Value.Length <= dataLength && slots[i]!.Value.Length / blockSize <= entries.Count, -1);
        if (fallback >= 0)
        {
            var slot = slots[fallback]!.Value;
            log.LogError("Chunk {ChunkId}: its tail does not verify at length {Length}; keeping it as found for reads to report", chunkId, slot.Length);
            return new RecoveredChunk(slot.Length, entries.GetRange(0, (int)(slot.Length / blockSize)), slot.TailCrc, fallback);
        }
        var covered = Math.Min((int)(dataLength / blockSize), entries.Count);
        if (dataLength > 0 || meta.Sealed)
        {
            log.LogError("Chunk {ChunkId}: no usable tail slot ({DataLength} bytes of data); keeping {Covered} full blocks", chunkId, dataLength, covered);
        }
        var length = (long)covered * blockSize;
        RandomAccess.Write(checksumFile, ChecksumFileLayout.EncodeSlot(new TailSlot(length, 0)), ChecksumFileLayout.SlotOffset(0));
        return new RecoveredChunk(length, entries.GetRange(0, covered), 0, 0);
    }

    private static bool Verifies(TailSlot slot, SafeFileHandle data, long dataLength, List<uint> entries, int blockSize)
    {
        var full = slot.Length / blockSize;
        if (slot.Length > dataLength || full > entries.Count)
        {
            return false;
        }
        var tailStart = full * blockSize;
        if (slot.Length > tailStart && Crc32C.Compute(ReadRange(data, tailStart, slot.Length)) != slot.TailCrc)
        {
            return false;
        }
        return full == 0 || Crc32C.Compute(ReadRange(data, tailStart - blockSize, tailStart)) == entries[(int)full - 1];
    }

    private static RecoveredChunk Adopt(ulong chunkId, TailSlot slot, int index, SafeFileHandle data, SafeFileHandle checksumFile,
        long dataLength, long checksumFileLength, List<uint> entries, int blockSize, ILogger log)
    {
        var full = (int)(slot.Length / blockSize);
        var entriesEnd = ChecksumFileLayout.EntryOffset(full);
        if (dataLength != slot.Length || checksumFileLength != entriesEnd)
        {
            log.LogWarning("Chunk {ChunkId}: torn tail cut back from {DataLength} bytes to the last verified length {Length}",
                chunkId, dataLength, slot.Length);
            RandomAccess.SetLength(data, slot.Length);
            RandomAccess.SetLength(checksumFile, entriesEnd);
            RandomAccess.FlushToDisk(data);
            RandomAccess.FlushToDisk(checksumFile);
        }
        return new RecoveredChunk(slot.Length, entries.GetRange(0, full), slot.TailCrc, index);
    }

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
