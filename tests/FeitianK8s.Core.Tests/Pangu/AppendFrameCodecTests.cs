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
            var frame = new AppendFrame
            {
                Offset = (ulong)random.NextInt64() >> random.Next(64),
                Crc32C = (uint)random.Next() >> random.Next(32),
                Fua = random.Next(2) == 1,
                Data = ByteString.CopyFrom(TestData.Random(random.Next(0, 300), round)),
            };
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
