using System.Buffers;
using System.Buffers.Binary;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The framed protocol's Request message for a frame (an AppendStreamRequest holding an AppendFrame) without
/// copying its payload through protobuf. The sender writes a head (the wire header, the request's frame field and
/// the frame's offset, crc32c and fua fields, then the data field's tag and length) followed by the payload as it
/// is: fields in any order are valid protobuf, so head + payload is exactly an AppendStreamRequest to any parser.
/// The receiver decodes a body that is one frame field with each known field at most once and takes the payload as
/// a slice; anything else (unknown or repeated fields, a header message, malformed bytes) is left to the generated
/// parser, so every body means what protobuf says it means.
/// </summary>
public static class AppendFrameCodec
{
    // Wire tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
    private const byte RequestFrameTag = (2 << 3) | 2;
    private const byte OffsetTag = (1 << 3) | 0;
    private const byte DataTag = (2 << 3) | 2;
    private const byte CrcTag = (3 << 3) | 0;
    private const byte FuaTag = (4 << 3) | 0;

    /// <summary>Longest head: wire header, 2 tags and 2 lengths (5 bytes each), offset (10), crc (5), fua (1) and their tags.</summary>
    public const int MaxHeadBytes = AppendStreamWire.HeaderBytes + 1 + 5 + 1 + 10 + 1 + 5 + 1 + 1 + 1 + 5;

    /// <summary>
    /// Writes the head of a Request message carrying <paramref name="frame"/> into <paramref name="destination"/>
    /// (at least <see cref="MaxHeadBytes"/>) and returns its length; the frame's data must follow it on the wire.
    /// </summary>
    public static int WriteHead(AppendFrame frame, Span<byte> destination)
    {
        var dataLength = frame.Data.Length;
        var frameLength = 1 + CodedOutputStream.ComputeRawVarint64Size(frame.Offset)
            + 1 + CodedOutputStream.ComputeRawVarint64Size(frame.Crc32C)
            + (frame.Fua ? 2 : 0)
            + 1 + CodedOutputStream.ComputeRawVarint64Size((uint)dataLength) + dataLength;
        var bodyLength = 1 + CodedOutputStream.ComputeRawVarint64Size((uint)frameLength) + frameLength;
        destination[0] = AppendStreamWire.Request;
        BinaryPrimitives.WriteInt32BigEndian(destination[1..], bodyLength);
        var at = AppendStreamWire.HeaderBytes;
        destination[at++] = RequestFrameTag;
        at += WriteVarint(destination[at..], (uint)frameLength);
        destination[at++] = OffsetTag;
        at += WriteVarint(destination[at..], frame.Offset);
        destination[at++] = CrcTag;
        at += WriteVarint(destination[at..], frame.Crc32C);
        if (frame.Fua)
        {
            destination[at++] = FuaTag;
            destination[at++] = 1;
        }
        destination[at++] = DataTag;
        at += WriteVarint(destination[at..], (uint)dataLength);
        return at;
    }

    /// <summary>A frame decoded from a Request body: its fields, and its payload as a slice of that body.</summary>
    public readonly record struct DecodedFrame(ulong Offset, uint Crc32C, bool Fua, ReadOnlySequence<byte> Data);

    /// <summary>
    /// Decodes a Request body that is a single frame field holding only known fields, each at most once; false for
    /// anything else, which the generated parser then reads (and refuses, if malformed).
    /// </summary>
    public static bool TryDecode(ReadOnlySequence<byte> body, out DecodedFrame frame)
    {
        frame = default;
        var reader = new SequenceReader<byte>(body);
        if (!reader.TryRead(out var tag) || tag != RequestFrameTag || !TryReadVarint(ref reader, out var frameLength) || frameLength != (ulong)reader.Remaining)
        {
            return false;
        }
        ulong offset = 0, crc = 0, fua = 0;
        var data = ReadOnlySequence<byte>.Empty;
        var seen = 0;
        while (!reader.End)
        {
            if (!reader.TryRead(out tag))
            {
                return false;
            }
            if (tag == DataTag)
            {
                if ((seen & DataBit) != 0 || !TryReadSlice(ref reader, out data))
                {
                    return false;
                }
                seen |= DataBit;
            }
            else if (!TryReadScalar(ref reader, tag, ref seen, ref offset, ref crc, ref fua))
            {
                return false;
            }
        }
        frame = new DecodedFrame(offset, (uint)crc, fua != 0, data);
        return true;
    }

    /// <summary>The head of a frame's Request message whose payload is its last field: the payload follows <see cref="Bytes"/> on the wire.</summary>
    public readonly record struct FrameHead(ulong Offset, uint Crc32C, bool Fua, int DataLength, int Bytes);

    /// <summary>
    /// Decodes the head of a whole Request message (wire header included) from its first bytes, when the message
    /// is one frame field holding only known fields, each at most once, with the data field last (as
    /// <see cref="WriteHead"/> writes it), within <paramref name="maxBodyBytes"/>; false for anything else or for
    /// too few bytes, which the caller then reads as a whole message. Lets a receiver take a large payload
    /// straight from the connection into its own buffer.
    /// </summary>
    public static bool TryDecodeHead(ReadOnlySequence<byte> message, int maxBodyBytes, out FrameHead head)
    {
        head = default;
        var reader = new SequenceReader<byte>(message);
        if (!reader.TryRead(out var kind) || kind != AppendStreamWire.Request || !reader.TryReadBigEndian(out int bodyLength)
            || bodyLength < 0 || bodyLength > maxBodyBytes)
        {
            return false;
        }
        var messageEnd = AppendStreamWire.HeaderBytes + (long)bodyLength;
        if (!reader.TryRead(out var tag) || tag != RequestFrameTag || !TryReadVarint(ref reader, out var frameLength)
            || reader.Consumed + (long)Math.Min(frameLength, long.MaxValue / 2) != messageEnd)
        {
            return false;
        }
        ulong offset = 0, crc = 0, fua = 0;
        var seen = 0;
        while (reader.TryRead(out tag))
        {
            if (tag == DataTag)
            {
                if (!TryReadVarint(ref reader, out var dataLength) || reader.Consumed + (long)Math.Min(dataLength, long.MaxValue / 2) != messageEnd)
                {
                    return false;
                }
                head = new FrameHead(offset, (uint)crc, fua != 0, (int)dataLength, (int)reader.Consumed);
                return true;
            }
            if (!TryReadScalar(ref reader, tag, ref seen, ref offset, ref crc, ref fua))
            {
                return false;
            }
        }
        return false;
    }

    private const int DataBit = 2;

    /// <summary>
    /// Reads the value of a frame's offset, crc32c or fua field, each allowed once (<paramref name="seen"/> holds a
    /// bit per field); false for any other tag, a repeat, or a value that is not a valid varint of its type.
    /// </summary>
    private static bool TryReadScalar(ref SequenceReader<byte> reader, byte tag, ref int seen, ref ulong offset, ref ulong crc, ref ulong fua)
    {
        var bit = tag switch { OffsetTag => 1, CrcTag => 4, FuaTag => 8, _ => 0 };
        if (bit == 0 || (seen & bit) != 0)
        {
            return false;
        }
        seen |= bit;
        return tag switch
        {
            OffsetTag => TryReadVarint(ref reader, out offset),
            CrcTag => TryReadVarint(ref reader, out crc) && crc <= uint.MaxValue,
            _ => TryReadVarint(ref reader, out fua),
        };
    }

    private static bool TryReadSlice(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> slice)
    {
        slice = default;
        if (!TryReadVarint(ref reader, out var length) || length > (ulong)reader.Remaining)
        {
            return false;
        }
        slice = reader.UnreadSequence.Slice(0, (long)length);
        reader.Advance((long)length);
        return true;
    }

    private static bool TryReadVarint(ref SequenceReader<byte> reader, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                // The tenth byte may only carry the top bit.
                return shift < 63 || b <= 1;
            }
        }
        return false;
    }

    private static int WriteVarint(Span<byte> destination, ulong value)
    {
        var at = 0;
        while (value >= 0x80)
        {
            destination[at++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[at++] = (byte)value;
        return at;
    }
}
