using System.Buffers;
using System.IO.Pipelines;

namespace FeitianK8s.Core.Nbd;

/// <summary>Exact-length reads from a <see cref="PipeReader"/>, copying incrementally so a large payload is never buffered twice.</summary>
internal static class NbdPipe
{
    /// <summary>
    /// Fills <paramref name="destination"/>. Returns false on end of stream before the first byte;
    /// throws <see cref="NbdProtocolException"/> on end of stream part-way (a truncated message).
    /// </summary>
    public static async ValueTask<bool> ReadExactlyAsync(PipeReader reader, Memory<byte> destination, string what, CancellationToken ct) =>
        await ReadExactlyAsync(reader, null, destination, what, ct).ConfigureAwait(false);

    /// <summary>Below this many missing bytes a read goes through the pipe; from it on, straight from the stream.</summary>
    internal const int DirectReadBytes = 64 * 1024;

    /// <summary>
    /// As <see cref="ReadExactlyAsync(PipeReader, Memory{byte}, string, CancellationToken)"/>, but once the pipe's
    /// buffered bytes are taken and at least <see cref="DirectReadBytes"/> are still missing, the rest is read
    /// from <paramref name="source"/> (the stream the pipe reads) straight into <paramref name="destination"/>:
    /// a large write payload then crosses memory once (socket to payload), not twice (socket to pipe to payload).
    /// The pipe holds nothing unconsumed at that point and reads the stream only inside its own reads, so the
    /// two never take the same bytes.
    /// </summary>
    public static async ValueTask<bool> ReadExactlyAsync(PipeReader reader, Stream? source, Memory<byte> destination, string what, CancellationToken ct)
    {
        int filled = 0;
        while (filled < destination.Length)
        {
            bool direct = source is not null && destination.Length - filled >= DirectReadBytes;
            ReadResult result = default;
            if (direct && !reader.TryRead(out result))
            {
                int read = await source!.ReadAtLeastAsync(destination[filled..], destination.Length - filled, throwOnEndOfStream: false, ct).ConfigureAwait(false);
                if (read == 0 && filled == 0)
                    return false;
                filled += read;
                if (filled < destination.Length)
                    throw new NbdProtocolException($"connection closed after {filled} of {destination.Length} bytes of {what}");
                break;
            }
            if (!direct)
                result = await reader.ReadAsync(ct).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            int take = (int)Math.Min(buffer.Length, destination.Length - filled);
            buffer.Slice(0, take).CopyTo(destination.Span[filled..]);
            filled += take;
            reader.AdvanceTo(buffer.GetPosition(take));
            if (filled < destination.Length && (result.IsCompleted || result.IsCanceled))
            {
                if (filled == 0)
                    return false;
                throw new NbdProtocolException($"connection closed after {filled} of {destination.Length} bytes of {what}");
            }
        }
        return true;
    }

    public static async ValueTask SkipAsync(PipeReader reader, long count, string what, CancellationToken ct)
    {
        long skipped = 0;
        while (skipped < count)
        {
            ReadResult result = await reader.ReadAsync(ct).ConfigureAwait(false);
            long take = Math.Min(result.Buffer.Length, count - skipped);
            skipped += take;
            reader.AdvanceTo(result.Buffer.GetPosition(take));
            if (skipped < count && (result.IsCompleted || result.IsCanceled))
                throw new NbdProtocolException($"connection closed after {skipped} of {count} bytes of {what}");
        }
    }
}
