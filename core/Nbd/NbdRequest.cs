using System.Buffers.Binary;

namespace FeitianK8s.Core.Nbd;

/// <summary>One transmission-phase request header (28 bytes on the wire).</summary>
public readonly record struct NbdRequest(NbdCommandFlags Flags, NbdCommand Command, ulong Handle, ulong Offset, uint Length)
{
    /// <summary>Parses a header; a wrong magic cannot be resynchronised, so it is a protocol violation.</summary>
    public static NbdRequest Parse(ReadOnlySpan<byte> header)
    {
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (magic != NbdProtocol.RequestMagic)
            throw new NbdProtocolException($"bad request magic 0x{magic:x8}");
        return new NbdRequest(
            (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(header[4..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(header[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(header[24..]));
    }

    public static void WriteSimpleReply(Span<byte> destination, NbdError error, ulong handle)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], handle);
    }
}
