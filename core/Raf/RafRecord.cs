using System.Buffers.Binary;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Core.Raf;

public enum RafRecordKind : byte
{
    Write = 1,
    Trim = 2,
    Zero = 3,
    /// <summary>GC rewrite of live data: applies only where the index still points at the source location.</summary>
    Relocate = 4,
}

/// <summary>
/// Header of one log record, followed by <see cref="DataLength"/> bytes of data.
/// Layout (little endian, 64 bytes): magic u32, kind u8, version u8, reserved u16,
/// seq u64, volume offset i64, length i64, data length u32, data CRC32C u32,
/// source segment u64, source offset i64 (Relocate only), reserved u32,
/// header CRC32C u32 over the 60 bytes before it.
/// A record is valid only when both CRCs match: a torn record (a prefix left by a
/// crash) fails one of them and ends replay of its segment.
/// </summary>
public readonly record struct RafRecordHeader(
    RafRecordKind Kind, ulong Seq, long VolumeOffset, long Length, int DataLength, uint DataCrc, ulong SourceSegment, long SourceOffset)
{
    public const int Size = 64;

    /// <summary>Largest data payload the format accepts, whatever the options of the engine that wrote it.</summary>
    public const int MaxDataLength = 64 << 20;
    public const uint Magic = 0x31464152; // "RAF1"
    private const byte Version = 1;

    public int RecordLength => Size + DataLength;

    public static RafRecordHeader ForData(RafRecordKind kind, ulong seq, long volumeOffset, ReadOnlySpan<byte> data, ulong sourceSegment = 0, long sourceOffset = 0) =>
        new(kind, seq, volumeOffset, data.Length, data.Length, Crc32C.Compute(data), sourceSegment, sourceOffset);

    public static RafRecordHeader ForRange(RafRecordKind kind, ulong seq, long volumeOffset, long length) =>
        new(kind, seq, volumeOffset, length, 0, Crc32C.Compute([]), 0, 0);

    public void Write(Span<byte> destination)
    {
        var h = destination[..Size];
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, Magic);
        h[4] = (byte)Kind;
        h[5] = Version;
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], Seq);
        BinaryPrimitives.WriteInt64LittleEndian(h[16..], VolumeOffset);
        BinaryPrimitives.WriteInt64LittleEndian(h[24..], Length);
        BinaryPrimitives.WriteInt32LittleEndian(h[32..], DataLength);
        BinaryPrimitives.WriteUInt32LittleEndian(h[36..], DataCrc);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], SourceSegment);
        BinaryPrimitives.WriteInt64LittleEndian(h[48..], SourceOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[60..], Crc32C.Compute(h[..60]));
    }

    /// <summary>Parses and validates a header (magic, version, CRC, field ranges); false for anything torn or foreign.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, int maxDataLength, out RafRecordHeader header)
    {
        header = default;
        if (source.Length < Size)
        {
            return false;
        }
        var h = source[..Size];
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != Magic || h[5] != Version
            || BinaryPrimitives.ReadUInt32LittleEndian(h[60..]) != Crc32C.Compute(h[..60]))
        {
            return false;
        }
        var kind = (RafRecordKind)h[4];
        var dataLength = BinaryPrimitives.ReadInt32LittleEndian(h[32..]);
        var length = BinaryPrimitives.ReadInt64LittleEndian(h[24..]);
        var offset = BinaryPrimitives.ReadInt64LittleEndian(h[16..]);
        if (kind is < RafRecordKind.Write or > RafRecordKind.Relocate || dataLength < 0 || dataLength > maxDataLength
            || offset < 0 || length < 0 || (kind is RafRecordKind.Write or RafRecordKind.Relocate && length != dataLength))
        {
            return false;
        }
        header = new RafRecordHeader(
            kind,
            BinaryPrimitives.ReadUInt64LittleEndian(h[8..]),
            offset,
            length,
            dataLength,
            BinaryPrimitives.ReadUInt32LittleEndian(h[36..]),
            BinaryPrimitives.ReadUInt64LittleEndian(h[40..]),
            BinaryPrimitives.ReadInt64LittleEndian(h[48..]));
        return true;
    }
}
