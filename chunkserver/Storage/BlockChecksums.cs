using System.Buffers.Binary;
using FeitianK8s.Core.Common;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// CRC32C of every fixed-size block of a chunk, in memory, mirroring the .crc sidecar file.
/// Entry i is the CRC of the full block [i*BlockSize, (i+1)*BlockSize); the partial last block's CRC
/// (if any) is <see cref="TailCrc"/>, kept in a tail slot of the file header (see <see cref="ChecksumFileLayout"/>).
/// </summary>
internal sealed class BlockChecksums(int blockSize, List<uint> fullBlocks, uint tailCrc)
{
    private readonly List<uint> _full = fullBlocks;

    public int BlockSize { get; } = blockSize;

    public int FullCount => _full.Count;

    public uint TailCrc { get; private set; } = tailCrc;

    /// <summary>CRC of block <paramref name="block"/> of a chunk of length <paramref name="length"/>.</summary>
    public uint CrcOf(int block) => block < _full.Count ? _full[block] : TailCrc;

    public static int BlocksFor(long length, int blockSize) => checked((int)((length + blockSize - 1) / blockSize));

    /// <summary>
    /// The CRCs after appending <paramref name="data"/> at <paramref name="length"/>: blocks that become
    /// full, and the new partial tail. The old tail CRC is extended without re-reading its bytes.
    /// </summary>
    public ChecksumUpdate PlanAppend(long length, ReadOnlySpan<byte> data)
    {
        var inBlock = (int)(length % BlockSize);
        var state = inBlock == 0 ? Crc32C.Begin() : Resume(TailCrc);
        var full = new List<uint>(data.Length / BlockSize + 1);
        var position = 0;
        while (position < data.Length)
        {
            var take = Math.Min(BlockSize - inBlock, data.Length - position);
            state = Crc32C.Update(state, data.Slice(position, take));
            position += take;
            inBlock += take;
            if (inBlock == BlockSize)
            {
                full.Add(Crc32C.Finish(state));
                state = Crc32C.Begin();
                inBlock = 0;
            }
        }
        return new ChecksumUpdate(_full.Count, [.. full], inBlock == 0 ? 0 : Crc32C.Finish(state));
    }

    public void Apply(ChecksumUpdate update)
    {
        _full.AddRange(update.FullBlocks);
        TailCrc = update.TailCrc;
    }

    /// <summary>Keeps the first <paramref name="fullBlocks"/> full-block CRCs and sets the tail CRC.</summary>
    public void Truncate(int fullBlocks, uint tailCrc)
    {
        _full.RemoveRange(fullBlocks, _full.Count - fullBlocks);
        TailCrc = tailCrc;
    }

    /// <summary>Turns a finished CRC back into the running state, so more bytes can be fed to it.</summary>
    public static uint Resume(uint finishedCrc) => finishedCrc ^ 0xFFFFFFFFu;
}

/// <summary>New full-block CRCs (from index FirstFull) and the new tail CRC after an append.</summary>
internal readonly record struct ChecksumUpdate(int FirstFull, uint[] FullBlocks, uint TailCrc);

/// <summary>One tail slot: the chunk length it describes and the CRC of the partial last block (0 if none).</summary>
internal readonly record struct TailSlot(long Length, uint TailCrc);

/// <summary>
/// Layout of the .crc sidecar: two 16-byte tail slots, then one uint32 CRC per full block.
/// A slot is { u64 length, u32 tail CRC, u32 CRC32C of those 12 bytes }, little endian.
/// Why two slots: the partial last block's CRC changes with every append. Appends write the slot
/// that does not hold the last durable (synced) state, so a power loss in the middle of a later
/// append can never destroy the CRC that covers bytes a Sync or FUA already made durable. Full-block
/// entries are written once, when the block fills, and never rewritten in place.
/// </summary>
internal static class ChecksumFileLayout
{
    public const int SlotSize = 16;
    public const int HeaderSize = 2 * SlotSize;
    public const int EntrySize = sizeof(uint);

    public static long SlotOffset(int slot) => (long)slot * SlotSize;

    public static long EntryOffset(int block) => HeaderSize + (long)block * EntrySize;

    public static byte[] EncodeSlot(TailSlot slot)
    {
        var bytes = new byte[SlotSize];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, slot.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), slot.TailCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), Crc32C.Compute(bytes.AsSpan(0, 12)));
        return bytes;
    }

    /// <summary>The slot, or null when it was never written or is torn/corrupt.</summary>
    public static TailSlot? DecodeSlot(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < SlotSize || Crc32C.Compute(bytes[..12]) != BinaryPrimitives.ReadUInt32LittleEndian(bytes[12..]))
        {
            return null;
        }
        var length = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        return length < 0 ? null : new TailSlot(length, BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]));
    }

    public static byte[] EncodeEntries(ReadOnlySpan<uint> entries)
    {
        var bytes = new byte[entries.Length * EntrySize];
        for (var i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * EntrySize), entries[i]);
        }
        return bytes;
    }

    public static List<uint> DecodeEntries(ReadOnlySpan<byte> bytes)
    {
        var entries = new List<uint>(bytes.Length / EntrySize);
        for (var offset = 0; offset + EntrySize <= bytes.Length; offset += EntrySize)
        {
            entries.Add(BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]));
        }
        return entries;
    }
}
