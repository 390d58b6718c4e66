namespace FeitianK8s.ChunkServer.Storage;

/// <summary>A snapshot of one chunk's metadata.</summary>
public readonly record struct ChunkState(ulong Id, long Length, bool Sealed, ulong Epoch, long MaxLength);

/// <summary>Result of a read: the data (already verified against the block checksums) and the chunk's state.</summary>
public readonly record struct ChunkReadResult(ReadOnlyMemory<byte> Data, long ChunkLength, bool Sealed);
