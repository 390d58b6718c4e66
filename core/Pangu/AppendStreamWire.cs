using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Google.Protobuf;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The framed append protocol: the AppendStream call's messages without HTTP/2 and gRPC around them, on
/// the chunk server's gRPC port (after TLS, when on). The client opens with <see cref="Preface"/>, which no
/// HTTP/1 or HTTP/2 client sends, so the port tells the two apart by the first bytes. Then both sides send
/// messages: a kind byte, a 4-byte big-endian body length, the body.
/// <list type="bullet">
/// <item>Client: <see cref="Request"/> (an AppendStreamRequest: the header first, then frames), then <see cref="End"/> (empty: no more frames).</item>
/// <item>Server: <see cref="Ready"/> (empty: preface accepted and caller authorized) first, then one <see cref="Answer"/>
/// (an AppendStreamResponse) per frame in landing order, and last a <see cref="Status"/> (an AppendFrameError; code 0 = ended
/// cleanly, else the gRPC status AppendStream would have ended with). A server closes the connection after its status.</item>
/// </list>
/// </summary>
public static class AppendStreamWire
{
    public static ReadOnlySpan<byte> Preface => "FEITIAN-APPEND/1\r\n"u8;

    public const byte Request = 1;
    public const byte End = 2;

    public const byte Answer = 1;
    public const byte Status = 2;
    public const byte Ready = 3;

    public const int HeaderBytes = 5;

    /// <summary>The full gRPC method whose rules (roles allowed, metrics name) the framed protocol follows.</summary>
    public const string MethodName = "/feitian.pangu.v1.ChunkServer/AppendStream";

    /// <summary>Writes one message (kind, length, body) into <paramref name="output"/> without flushing.</summary>
    public static void Write(IBufferWriter<byte> output, byte kind, IMessage? body)
    {
        var size = body?.CalculateSize() ?? 0;
        Fill(output.GetSpan(HeaderBytes + size), kind, body, size);
        output.Advance(HeaderBytes + size);
    }

    /// <summary>One message as a pooled array (the caller returns it to <see cref="ArrayPool{T}.Shared"/>): kind, length, body.</summary>
    public static (byte[] Buffer, int Length) Encode(byte kind, IMessage? body)
    {
        var size = body?.CalculateSize() ?? 0;
        var buffer = ArrayPool<byte>.Shared.Rent(HeaderBytes + size);
        Fill(buffer, kind, body, size);
        return (buffer, HeaderBytes + size);
    }

    /// <summary>Kind, length and body of <paramref name="size"/> bytes at the start of <paramref name="span"/>.</summary>
    private static void Fill(Span<byte> span, byte kind, IMessage? body, int size)
    {
        span[0] = kind;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], size);
        body?.WriteTo(span.Slice(HeaderBytes, size));
    }

    /// <summary>
    /// Takes one whole message off the front of <paramref name="buffer"/>, if there is one. A body over
    /// <paramref name="maxBodyBytes"/> (or a negative length) is a protocol error.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, int maxBodyBytes, out byte kind, out ReadOnlySequence<byte> body)
    {
        kind = 0;
        body = default;
        if (buffer.Length < HeaderBytes)
        {
            return false;
        }
        Span<byte> header = stackalloc byte[HeaderBytes];
        buffer.Slice(0, HeaderBytes).CopyTo(header);
        var length = BinaryPrimitives.ReadInt32BigEndian(header[1..]);
        if (length < 0 || length > maxBodyBytes)
        {
            throw new AppendWireException($"a message of {(uint)length} bytes is over the limit of {maxBodyBytes}");
        }
        if (buffer.Length < HeaderBytes + length)
        {
            return false;
        }
        kind = header[0];
        body = buffer.Slice(HeaderBytes, length);
        buffer = buffer.Slice(HeaderBytes + length);
        return true;
    }

    /// <summary>
    /// Reads the first bytes of a connection: true when they are the preface (consumed); false when they
    /// cannot be, their first byte differing (nothing consumed or examined, so an HTTP server reads them next;
    /// no HTTP/1 method and not the HTTP/2 preface begins with an 'F'). Bytes that start like the preface and
    /// then differ, or stop, are neither, however TCP splits them: <see cref="AppendWireException"/>.
    /// </summary>
    public static async Task<bool> ReadPrefaceAsync(PipeReader input, CancellationToken ct)
    {
        var preface = Preface.ToArray();
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var seen = (int)Math.Min(buffer.Length, preface.Length);
            var matches = StartsWith(buffer.Slice(0, seen), preface.AsSpan(0, seen));
            if (matches && seen == preface.Length)
            {
                input.AdvanceTo(buffer.GetPosition(preface.Length));
                return true;
            }
            if (!matches && !StartsWith(buffer.Slice(0, 1), preface.AsSpan(0, 1)))
            {
                input.AdvanceTo(buffer.Start);
                return false;
            }
            if (!matches || result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                throw new AppendWireException(matches ? "the connection ended inside the preface" : "the connection began like the framed append preface and then differed");
            }
            // A prefix of the preface so far: wait for the rest (an HTTP client never sends these bytes).
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool StartsWith(ReadOnlySequence<byte> bytes, ReadOnlySpan<byte> expected)
    {
        Span<byte> copy = stackalloc byte[expected.Length];
        bytes.CopyTo(copy);
        return copy.SequenceEqual(expected);
    }
}

/// <summary>Bytes that break the framed append protocol (a message too large, an unknown kind, a bad preface).</summary>
public sealed class AppendWireException(string message) : Exception(message);
