namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The ordered chunks of a file with the length each one is known to hold; maps file
/// offsets to chunks and reads ranges that span several chunks.
/// </summary>
public sealed class ChunkLayout(IReadOnlyList<PanguChunk> chunks)
{
    public IReadOnlyList<PanguChunk> Chunks { get; } = chunks;

    public long Length => Chunks.Count == 0 ? 0 : Chunks[^1].FileOffset + Chunks[^1].Length;

    /// <summary>Index of the chunk holding offset, or -1 when offset is at or past the end.</summary>
    public int IndexOf(long offset)
    {
        int lo = 0, hi = Chunks.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            var c = Chunks[mid];
            if (offset < c.FileOffset)
            {
                hi = mid - 1;
            }
            else if (offset >= c.FileOffset + c.Length)
            {
                lo = mid + 1;
            }
            else
            {
                return mid;
            }
        }
        return -1;
    }

    /// <summary>Reads [offset, offset+buffer.Length) clipped to <see cref="Length"/>; returns bytes read.</summary>
    public async Task<int> ReadAsync(ChunkReader reader, long offset, Memory<byte> buffer, CancellationToken ct)
    {
        if (offset < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"negative read offset {offset}");
        }
        var total = 0;
        while (total < buffer.Length)
        {
            var index = IndexOf(offset + total);
            if (index < 0)
            {
                break;
            }
            var chunk = Chunks[index];
            var inChunk = offset + total - chunk.FileOffset;
            var want = (int)Math.Min(buffer.Length - total, chunk.Length - inChunk);
            var got = await reader.ReadAsync(chunk, inChunk, buffer.Slice(total, want), ct);
            total += got;
            if (got < want)
            {
                break;
            }
        }
        return total;
    }
}
