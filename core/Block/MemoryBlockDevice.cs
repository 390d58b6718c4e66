namespace FeitianK8s.Core.Block;

/// <summary>
/// A sparse in-memory device for tests: fixed-size chunks allocated on first write, dropped by
/// trim/write-zeroes when wholly covered. One lock serialises operations, so every connection sees
/// every completed write (multi-connection safe).
/// </summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    public const int ChunkSize = 64 * 1024;

    private readonly Dictionary<long, byte[]> _chunks = [];
    private readonly object _gate = new();
    private long _flushes;
    private long _fuaWrites;

    public MemoryBlockDevice(string name, long size, bool readOnly = false, bool supportsMultiConnection = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Name = name;
        Size = size;
        ReadOnly = readOnly;
        SupportsMultiConnection = supportsMultiConnection;
    }

    public string Name { get; }
    public long Size { get; }
    public bool ReadOnly { get; }
    public bool SupportsMultiConnection { get; }

    /// <summary>FLUSH calls (and FUA writes) seen, so tests can prove durability requests reach the device.</summary>
    public long FlushCount => Interlocked.Read(ref _flushes);
    public long FuaWriteCount => Interlocked.Read(ref _fuaWrites);

    public int AllocatedChunks { get { lock (_gate) return _chunks.Count; } }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        BlockRange.Check(this, offset, buffer.Length, "read");
        lock (_gate)
        {
            ForEachPiece(offset, buffer.Length, (chunkIndex, inChunk, done, count) =>
            {
                var target = buffer.Span.Slice(done, count);
                if (_chunks.TryGetValue(chunkIndex, out byte[]? chunk))
                    chunk.AsSpan(inChunk, count).CopyTo(target);
                else
                    target.Clear();
            });
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "write");
        BlockRange.Check(this, offset, data.Length, "write");
        lock (_gate)
        {
            ForEachPiece(offset, data.Length, (chunkIndex, inChunk, done, count) =>
            {
                if (!_chunks.TryGetValue(chunkIndex, out byte[]? chunk))
                    _chunks[chunkIndex] = chunk = new byte[ChunkSize];
                data.Span.Slice(done, count).CopyTo(chunk.AsSpan(inChunk, count));
            });
        }
        if (fua)
            Interlocked.Increment(ref _fuaWrites);
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken ct = default)
    {
        Interlocked.Increment(ref _flushes);
        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "trim");
        Zero(offset, length, "trim");
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool fua, CancellationToken ct = default)
    {
        BlockRange.CheckWritable(this, "write-zeroes");
        Zero(offset, length, "write-zeroes");
        if (fua)
            Interlocked.Increment(ref _fuaWrites);
        return ValueTask.CompletedTask;
    }

    private void Zero(long offset, long length, string operation)
    {
        BlockRange.Check(this, offset, length, operation);
        lock (_gate)
        {
            ForEachPiece(offset, length, (chunkIndex, inChunk, _, count) =>
            {
                if (!_chunks.TryGetValue(chunkIndex, out byte[]? chunk))
                    return;
                if (count == ChunkSize)
                    _chunks.Remove(chunkIndex);
                else
                    chunk.AsSpan(inChunk, count).Clear();
            });
        }
    }

    private delegate void PieceAction(long chunkIndex, int offsetInChunk, int done, int count);

    private static void ForEachPiece(long offset, long length, PieceAction action)
    {
        long done = 0;
        while (done < length)
        {
            long position = offset + done;
            long chunkIndex = position / ChunkSize;
            int inChunk = (int)(position % ChunkSize);
            int count = (int)Math.Min(ChunkSize - inChunk, length - done);
            action(chunkIndex, inChunk, (int)done, count);
            done += count;
        }
    }
}
