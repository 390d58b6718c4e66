using System.Buffers.Binary;
using FeitianK8s.Core.Common;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>
/// CRC32C of every fixed-size block of a chunk, in memory (mirror of the .crc sidecar file).
/// Invariant: entry i is the CRC of bytes [i*BlockSize, min((i+1)*BlockSize, length)); the last
/// entry covers the partial last block and is replaced as that block grows.
/// </summary>
internal sealed class BlockChecksums(int blockSize, List<uint> entries)
{
    public const int EntrySize = sizeof(uint);

    private readonly List<uint> _entries = entries;

    public int BlockSize { get; } = blockSize;

    public int Count => _entries.Count;

    public uint this[int block] => _entries[block];

    public static int BlocksFor(long length, int blockSize) => checked((int)((length + blockSize - 1) / blockSize));

    /// <summary>
    /// The entries that change when <paramref name="data"/> is appended at <paramref name="length"/>:
    /// the partial last block (extended from its stored CRC, without re-reading its bytes) and new blocks.
    /// </summary>
    public ChecksumUpdate PlanAppend(long length, ReadOnlySpan<byte> data)
    {
        var firstBlock = (int)(length / BlockSize);
        var inBlock = (int)(length % BlockSize);
        var updated = new List<uint>(data.Length / BlockSize + 2);
        var position = 0;
        while (position < data.Length)
        {
            var state = inBlock == 0 ? Crc32C.Begin() : Resume(_entries[firstBlock]);
            var take = Math.Min(BlockSize - inBlock, data.Length - position);
            state = Crc32C.Update(state, data.Slice(position, take));
            updated.Add(Crc32C.Finish(state));
            position += take;
            inBlock = 0;
        }
        return new ChecksumUpdate(firstBlock, [.. updated]);
    }

    public void Apply(ChecksumUpdate update)
    {
        for (var i = 0; i < update.Entries.Length; i++)
        {
            var block = update.FirstBlock + i;
            if (block < _entries.Count)
            {
                _entries[block] = update.Entries[i];
            }
            else
            {
                _entries.Add(update.Entries[i]);
            }
        }
    }

    public void Truncate(int count) => _entries.RemoveRange(count, _entries.Count - count);

    public void Set(int block, uint crc) => _entries[block] = crc;

    /// <summary>Turns a finished CRC back into the running state, so more bytes can be fed to it.</summary>
    public static uint Resume(uint finishedCrc) => finishedCrc ^ 0xFFFFFFFFu;

    public static byte[] Encode(ReadOnlySpan<uint> entries)
    {
        var bytes = new byte[entries.Length * EntrySize];
        for (var i = 0; i < entries.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * EntrySize), entries[i]);
        }
        return bytes;
    }

    public static List<uint> Decode(ReadOnlySpan<byte> bytes)
    {
        var entries = new List<uint>(bytes.Length / EntrySize);
        for (var offset = 0; offset + EntrySize <= bytes.Length; offset += EntrySize)
        {
            entries.Add(BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]));
        }
        return entries;
    }
}

/// <summary>New values for entries FirstBlock.. of a chunk's checksums.</summary>
internal readonly record struct ChecksumUpdate(int FirstBlock, uint[] Entries);
