namespace FeitianK8s.ChunkServer.Storage;

/// <summary>Why a chunk operation was refused. The gRPC layer maps each to a status code and reason.</summary>
public enum ChunkError
{
    NotFound,
    StaleEpoch,
    WrongOffset,
    ChecksumMismatch,
    Sealed,
    TooLarge,
    DiskFull,
    ChunkFull,
    Corrupt,
    InvalidArgument,
    /// <summary>An offset or length lies past the chunk's end (read offset, seal length).</summary>
    BeyondEnd,
    AlreadyExists,
    /// <summary>A copy source is not sealed or not at the expected length.</summary>
    SourceMismatch,
    IoError,
}

/// <summary>A refused chunk operation. Nothing was applied when this is thrown.</summary>
public sealed class ChunkStoreException(ChunkError error, string message, long? chunkLength = null, Exception? inner = null)
    : Exception(message, inner)
{
    public ChunkError Error { get; } = error;

    /// <summary>The chunk's current length, where it helps the caller (wrong offset, beyond end).</summary>
    public long? ChunkLength { get; } = chunkLength;
}
