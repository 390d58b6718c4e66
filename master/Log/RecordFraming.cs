using System.Buffers.Binary;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Master.Log;

/// <summary>
/// Frames a record as [u32 length][u32 CRC32C of payload][payload], little-endian.
/// A record is valid only when its header is complete, its length is within bounds and
/// non-zero, and its checksum matches.
/// </summary>
public static class RecordFraming
{
    public const int HeaderSize = 8;
    public const int MaxPayloadSize = 256 * 1024 * 1024;

    public static void Write(Stream stream, ReadOnlySpan<byte> payload)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], Crc32C.Compute(payload));
        stream.Write(header);
        stream.Write(payload);
    }

    /// <summary>Reads the record at <paramref name="offset"/>; false when it is torn, corrupt or absent.</summary>
    public static bool TryRead(ReadOnlySpan<byte> data, int offset, out ReadOnlySpan<byte> payload, out int next)
    {
        payload = default;
        next = offset;
        if (data.Length - offset < HeaderSize)
        {
            return false;
        }
        var length = BinaryPrimitives.ReadUInt32LittleEndian(data[offset..]);
        var crc = BinaryPrimitives.ReadUInt32LittleEndian(data[(offset + 4)..]);
        if (length == 0 || length > MaxPayloadSize || length > (uint)(data.Length - offset - HeaderSize))
        {
            return false;
        }
        var candidate = data.Slice(offset + HeaderSize, (int)length);
        if (Crc32C.Compute(candidate) != crc)
        {
            return false;
        }
        payload = candidate;
        next = offset + HeaderSize + (int)length;
        return true;
    }

    /// <summary>
    /// True when a bad record at <paramref name="offset"/> can only be an interrupted final
    /// write: its declared extent reaches the end of the data, or everything after it is zero.
    /// </summary>
    public static bool IsTornTail(ReadOnlySpan<byte> data, int offset)
    {
        if (data.Length - offset < HeaderSize)
        {
            return true;
        }
        var length = BinaryPrimitives.ReadUInt32LittleEndian(data[offset..]);
        if ((ulong)offset + HeaderSize + length >= (ulong)data.Length)
        {
            return true;
        }
        return !data[offset..].ContainsAnyExcept((byte)0);
    }
}
