using System.Buffers.Binary;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// The index as of a log position. Layout (little endian): magic u32, version u32,
/// position (segment u64, offset i64, seq u64), extent count i64, extents (start i64,
/// length i64, segment u64, data offset i64, seq u64), CRC32C u32 of everything before.
/// Recovery replays only records after <see cref="Position"/>.
/// </summary>
public sealed record RafCheckpoint(LogPosition Position, IReadOnlyList<Extent> Extents)
{
    private const uint Magic = 0x43464152; // "RAFC"
    private const uint Version = 1;
    private const int FixedSize = 4 + 4 + 8 + 8 + 8 + 8;
    private const int ExtentSize = 40;

    /// <summary>Bytes of a serialized checkpoint of an index with <paramref name="extents"/> extents.</summary>
    public static long SerializedSize(long extents) => FixedSize + (extents * ExtentSize) + 4;

    public byte[] Serialize()
    {
        var bytes = new byte[SerializedSize(Extents.Count)];
        var span = bytes.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], Position.Segment);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], Position.Offset);
        BinaryPrimitives.WriteUInt64LittleEndian(span[24..], Position.Seq);
        BinaryPrimitives.WriteInt64LittleEndian(span[32..], Extents.Count);
        var at = FixedSize;
        foreach (var e in Extents)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[at..], e.Start);
            BinaryPrimitives.WriteInt64LittleEndian(span[(at + 8)..], e.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(span[(at + 16)..], e.Segment);
            BinaryPrimitives.WriteInt64LittleEndian(span[(at + 24)..], e.DataOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(span[(at + 32)..], e.Seq);
            at += ExtentSize;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(span[at..], Crc32C.Compute(span[..at]));
        return bytes;
    }

    /// <summary>Null when the bytes are not a complete checkpoint with a matching CRC.</summary>
    public static RafCheckpoint? TryParse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < FixedSize + 4
            || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]) != Version)
        {
            return null;
        }
        var count = BinaryPrimitives.ReadInt64LittleEndian(bytes[32..]);
        if (count < 0 || count > (bytes.Length - FixedSize - 4) / ExtentSize || bytes.Length != FixedSize + (count * ExtentSize) + 4)
        {
            return null;
        }
        var body = bytes[..^4];
        if (BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]) != Crc32C.Compute(body))
        {
            return null;
        }
        var position = new LogPosition(
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(bytes[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[24..]));
        var extents = new Extent[count];
        var at = FixedSize;
        for (var i = 0; i < count; i++)
        {
            extents[i] = new Extent(
                BinaryPrimitives.ReadInt64LittleEndian(bytes[at..]),
                BinaryPrimitives.ReadInt64LittleEndian(bytes[(at + 8)..]),
                BinaryPrimitives.ReadUInt64LittleEndian(bytes[(at + 16)..]),
                BinaryPrimitives.ReadInt64LittleEndian(bytes[(at + 24)..]),
                BinaryPrimitives.ReadUInt64LittleEndian(bytes[(at + 32)..]));
            at += ExtentSize;
        }
        return new RafCheckpoint(position, extents);
    }
}
