using System.Buffers;
using System.Buffers.Binary;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Testing;
using Google.Protobuf;

namespace FeitianK8s.Core.Tests.Pangu;

/// <summary>
/// The frame codec against the generated protobuf code: what the head + payload writer sends is the same
/// AppendStreamRequest to the generated parser, what the generated serializer writes decodes to the same frame,
/// and no body (mutated at random, or with repeated, unknown or trailing fields) decodes to anything other than
/// what the generated parser makes of it.
/// </summary>
public sealed class AppendFrameCodecTests
{
    public static TheoryData<ulong, uint, bool, int> Frames => new()
    {
        { 0, 0, false, 0 },
        { 1, 1, true, 1 },
        { 127, 0x7F, false, 127 },
        { 128, 0x80, true, 128 },
        { 16_383, 0xFFFF_FFFF, false, 16_384 },
        { 64UL << 20, 0x1234_5678, true, 32 << 10 },
        { ulong.MaxValue, 0x8000_0000, false, 1 << 20 },
    };

    [Theory]
    [MemberData(nameof(Frames))]
    public void A_head_followed_by_the_payload_is_the_request_the_generated_parser_reads(ulong offset, uint crc, bool fua, int dataLength)
    {
        var frame = new AppendFrame { Offset = offset, Crc32C = crc, Fua = fua, Data = ByteString.CopyFrom(TestData.Random(dataLength, dataLength)) };
        var message = HeadThenPayload(frame);

        Assert.Equal(AppendStreamWire.Request, message[0]);
        var body = message.AsSpan(AppendStreamWire.HeaderBytes);
        Assert.Equal(body.Length, BinaryPrimitives.ReadInt32BigEndian(message.AsSpan(1)));
        Assert.Equal(new AppendStreamRequest { Frame = frame }, AppendStreamRequest.Parser.ParseFrom(body));
        Assert.True(AppendFrameCodec.TryDecode(new ReadOnlySequence<byte>(body.ToArray()), out var decoded));
        AssertSame(frame, decoded);
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void A_body_the_generated_serializer_wrote_decodes_to_the_same_frame_even_split_across_segments(ulong offset, uint crc, bool fua, int dataLength)
    {
        var frame = new AppendFrame { Offset = offset, Crc32C = crc, Fua = fua, Data = ByteString.CopyFrom(TestData.Random(dataLength, dataLength + 1)) };
        var body = new AppendStreamRequest { Frame = frame }.ToByteArray();
        foreach (var segment in new[] { body.Length + 1, 7, 1 })
        {
            Assert.True(AppendFrameCodec.TryDecode(Segmented(body, segment), out var decoded), $"not decoded in segments of {segment}");
            AssertSame(frame, decoded);
        }
    }

    [Fact]
    public void Bodies_with_a_header_repeated_unknown_or_trailing_fields_are_left_to_the_generated_parser()
    {
        var frame = new AppendFrame { Offset = 4096, Crc32C = 7, Data = ByteString.CopyFrom(TestData.Random(100, 3)) };
        var canonical = new AppendStreamRequest { Frame = frame }.ToByteArray();
        var header = new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 5, Epoch = 2 } }.ToByteArray();
        var innerWithRepeatedOffset = Concat(new AppendFrame { Offset = 1 }.ToByteArray(), frame.ToByteArray());
        var innerWithUnknownField = Concat(frame.ToByteArray(), [(9 << 3) | 0, 1]);
        byte[][] declined =
        [
            header,
            Concat(canonical, canonical),
            Concat(canonical, [(7 << 3) | 0, 1]),
            Wrap(innerWithRepeatedOffset),
            Wrap(innerWithUnknownField),
            [],
        ];
        foreach (var body in declined)
        {
            Assert.False(AppendFrameCodec.TryDecode(new ReadOnlySequence<byte>(body), out _), Convert.ToHexString(body));
        }
        // The generated parser still reads each of these (protobuf's rules: the last value wins, unknown fields are kept).
        Assert.Equal(4096UL, AppendStreamRequest.Parser.ParseFrom(Wrap(innerWithRepeatedOffset)).Frame.Offset);
        Assert.Equal(frame.Data, AppendStreamRequest.Parser.ParseFrom(Wrap(innerWithUnknownField)).Frame.Data);
    }

    [Fact]
    public void Mutated_bodies_never_decode_to_anything_but_what_the_generated_parser_reads()
    {
        var random = new Random(12);
        var decodedCount = 0;
        for (var round = 0; round < 20_000; round++)
        {
            var frame = RandomFrame(random, round);
            var body = round % 2 == 0
                ? new AppendStreamRequest { Frame = frame }.ToByteArray()
                : HeadThenPayload(frame)[AppendStreamWire.HeaderBytes..];
            for (var flips = random.Next(1, 4); flips > 0 && body.Length > 0; flips--)
            {
                body[random.Next(body.Length)] = (byte)random.Next(256);
            }
            if (random.Next(4) == 0)
            {
                body = body[..random.Next(body.Length + 1)];
            }

            AppendStreamRequest? parsed;
            try
            {
                parsed = AppendStreamRequest.Parser.ParseFrom(body);
            }
            catch (InvalidProtocolBufferException)
            {
                parsed = null;
            }
            if (AppendFrameCodec.TryDecode(Segmented(body, random.Next(1, 64)), out var decoded))
            {
                decodedCount++;
                Assert.True(parsed is not null, $"decoded a body the generated parser refuses: {Convert.ToHexString(body)}");
                Assert.Equal(AppendStreamRequest.KindOneofCase.Frame, parsed.KindCase);
                AssertSame(parsed.Frame, decoded);
            }
        }
        Assert.True(decodedCount > 1_000, $"only {decodedCount} of the mutated bodies decoded: the comparison proved little");
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void The_head_of_a_written_frame_decodes_from_its_first_bytes_alone_and_locates_the_payload(ulong offset, uint crc, bool fua, int dataLength)
    {
        var frame = new AppendFrame { Offset = offset, Crc32C = crc, Fua = fua, Data = ByteString.CopyFrom(TestData.Random(dataLength, dataLength + 2)) };
        var message = HeadThenPayload(frame);
        var headBytes = message.Length - dataLength;
        foreach (var have in new[] { headBytes, headBytes + (dataLength / 2), message.Length })
        {
            Assert.True(AppendFrameCodec.TryDecodeHead(Segmented(message[..have], 3), 16 << 20, out var head), $"not decoded from {have} bytes");
            Assert.Equal(new AppendFrameCodec.FrameHead(offset, crc, fua, dataLength, headBytes), head);
            Assert.Equal(frame.Data.ToByteArray(), message[head.Bytes..]);
        }
        for (var have = 0; have < headBytes; have++)
        {
            Assert.False(AppendFrameCodec.TryDecodeHead(new ReadOnlySequence<byte>(message[..have]), 16 << 20, out _), $"decoded from only {have} bytes");
        }
    }

    [Fact]
    public void Heads_that_are_not_a_lone_frame_with_its_data_last_within_the_limit_are_left_to_the_whole_message()
    {
        var frame = new AppendFrame { Offset = 4096, Crc32C = 7, Fua = true, Data = ByteString.CopyFrom(TestData.Random(1000, 4)) };
        var written = HeadThenPayload(frame);
        var serializedBody = new AppendStreamRequest { Frame = frame }.ToByteArray(); // field order: data before crc and fua
        var headerBody = new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 5, Epoch = 2 } }.ToByteArray();
        var repeatedOffsetBody = Wrap(Concat(new AppendFrame { Offset = 1 }.ToByteArray(), frame.ToByteArray()));
        var unknownFieldBody = Wrap(Concat([(9 << 3) | 0, 1], frame.ToByteArray()));
        var endMessage = written.ToArray();
        endMessage[0] = AppendStreamWire.End;
        byte[][] declined =
        [
            Message(serializedBody),
            Message(headerBody),
            Message(repeatedOffsetBody),
            Message(unknownFieldBody),
            Message(Concat(written[AppendStreamWire.HeaderBytes..], [(7 << 3) | 0, 1])),
            endMessage,
        ];
        foreach (var message in declined)
        {
            Assert.False(AppendFrameCodec.TryDecodeHead(new ReadOnlySequence<byte>(message), 16 << 20, out _), Convert.ToHexString(message.AsSpan(0, Math.Min(40, message.Length))));
        }
        Assert.False(AppendFrameCodec.TryDecodeHead(new ReadOnlySequence<byte>(written), written.Length - AppendStreamWire.HeaderBytes - 1, out _), "a body over the limit");
        Assert.True(AppendFrameCodec.TryDecodeHead(new ReadOnlySequence<byte>(written), written.Length - AppendStreamWire.HeaderBytes, out _), "a body at the limit");
    }

    [Fact]
    public void Mutated_heads_never_decode_to_other_than_what_the_generated_parser_reads_from_the_whole_message()
    {
        var random = new Random(13);
        var decodedCount = 0;
        for (var round = 0; round < 20_000; round++)
        {
            var frame = RandomFrame(random, round);
            var message = HeadThenPayload(frame);
            for (var flips = random.Next(1, 3); flips > 0; flips--)
            {
                message[random.Next(Math.Min(message.Length, AppendFrameCodec.MaxHeadBytes))] = (byte)random.Next(256);
            }
            if (!AppendFrameCodec.TryDecodeHead(Segmented(message, random.Next(1, 64)), 16 << 20, out var head))
            {
                continue;
            }
            decodedCount++;
            var body = message[AppendStreamWire.HeaderBytes..];
            Assert.Equal(AppendStreamWire.Request, message[0]);
            Assert.Equal(body.Length, BinaryPrimitives.ReadInt32BigEndian(message.AsSpan(1)));
            var parsed = AppendStreamRequest.Parser.ParseFrom(body);
            Assert.Equal(AppendStreamRequest.KindOneofCase.Frame, parsed.KindCase);
            Assert.Equal(parsed.Frame.Offset, head.Offset);
            Assert.Equal(parsed.Frame.Crc32C, head.Crc32C);
            Assert.Equal(parsed.Frame.Fua, head.Fua);
            Assert.Equal(parsed.Frame.Data.ToByteArray(), message[head.Bytes..]);
            Assert.Equal(head.Bytes + head.DataLength, message.Length);
        }
        Assert.True(decodedCount > 1_000, $"only {decodedCount} of the mutated heads decoded: the comparison proved little");
    }

    /// <summary>A whole Request message (wire header, then <paramref name="body"/>).</summary>
    private static byte[] Message(byte[] body)
    {
        var header = new byte[AppendStreamWire.HeaderBytes];
        header[0] = AppendStreamWire.Request;
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(1), body.Length);
        return Concat(header, body);
    }

    /// <summary>A frame with fields of every varint size and a payload of up to 300 bytes.</summary>
    private static AppendFrame RandomFrame(Random random, int round) => new()
    {
        Offset = (ulong)random.NextInt64() >> random.Next(64),
        Crc32C = (uint)random.Next() >> random.Next(32),
        Fua = random.Next(2) == 1,
        Data = ByteString.CopyFrom(TestData.Random(random.Next(0, 300), round)),
    };

    private static void AssertSame(AppendFrame expected, AppendFrameCodec.DecodedFrame decoded)
    {
        Assert.Equal(expected.Offset, decoded.Offset);
        Assert.Equal(expected.Crc32C, decoded.Crc32C);
        Assert.Equal(expected.Fua, decoded.Fua);
        Assert.Equal(expected.Data.ToByteArray(), decoded.Data.ToArray());
    }

    /// <summary>The whole Request message as the framed client sends it: the codec's head, then the payload.</summary>
    private static byte[] HeadThenPayload(AppendFrame frame)
    {
        var head = new byte[AppendFrameCodec.MaxHeadBytes];
        var length = AppendFrameCodec.WriteHead(frame, head);
        return Concat(head[..length], frame.Data.ToByteArray());
    }

    /// <summary>An AppendStreamRequest body whose frame field holds exactly <paramref name="inner"/>.</summary>
    private static byte[] Wrap(byte[] inner)
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteTag(2, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(inner));
        output.Flush();
        return stream.ToArray();
    }

    private static byte[] Concat(byte[] a, byte[] b) => [.. a, .. b];

    /// <summary>The bytes as a sequence of segments of <paramref name="size"/> bytes, as a pipe may hand them over.</summary>
    private static ReadOnlySequence<byte> Segmented(byte[] bytes, int size)
    {
        if (bytes.Length <= size)
        {
            return new ReadOnlySequence<byte>(bytes);
        }
        var first = new Segment(bytes.AsMemory(0, size));
        var last = first;
        for (var at = size; at < bytes.Length; at += size)
        {
            last = last.Append(bytes.AsMemory(at, Math.Min(size, bytes.Length - at)));
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
