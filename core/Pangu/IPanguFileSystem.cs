namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The append-only distributed file system as its users (RAF, the CLI) see it.
/// <see cref="PanguClient"/> is the real implementation over the master and chunk
/// servers; <see cref="MemoryPanguFileSystem"/> keeps the same semantics (fencing
/// included) in memory for unit tests.
/// </summary>
public interface IPanguFileSystem
{
    /// <summary>Creates an empty file; parents are implied. Throws <see cref="PanguException"/> (AlreadyExists) when present.</summary>
    Task<PanguFileInfo> CreateAsync(string path, int replicas = 0, PanguVolumeGuard? guard = null, CancellationToken ct = default);

    /// <summary>
    /// Takes the file's write lease (a new, greater epoch) and seals any chunk left
    /// open by an earlier writer at the length all answering replicas hold. From
    /// then on nothing an older writer sends can land.
    /// </summary>
    Task<IPanguAppender> OpenForAppendAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default);

    /// <summary>Opens for reading with the chunk layout cached; reads past the cached length refresh it.</summary>
    Task<IPanguReader> OpenForReadAsync(string path, CancellationToken ct = default);

    /// <summary>Null when the file does not exist.</summary>
    Task<PanguFileInfo?> StatAsync(string path, CancellationToken ct = default);

    Task<IReadOnlyList<PanguDirectoryEntry>> ListAsync(string directory, bool recursive = false, CancellationToken ct = default);

    Task RenameAsync(string from, string to, CancellationToken ct = default);

    /// <summary>Deletes the file and its chunks. Deleting a missing file throws <see cref="PanguException"/> (NotFound).</summary>
    Task DeleteAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default);
}

/// <summary>The single writer of one file, holding its lease epoch.</summary>
public interface IPanguAppender : IAsyncDisposable
{
    string Path { get; }
    ulong Epoch { get; }

    /// <summary>Bytes acknowledged by every replica: the file length as this writer knows it.</summary>
    long Length { get; }

    /// <summary>
    /// Appends and returns the file offset at which the data starts. Acknowledged
    /// only when every replica accepted it; with <paramref name="durable"/> every
    /// replica also made it durable (FUA). Replica failures are absorbed (seal,
    /// new chunk, retry); throws <see cref="FencedException"/> once a newer writer
    /// took the lease. Appends are applied in call order; callers may overlap calls.
    /// </summary>
    Task<long> AppendAsync(ReadOnlyMemory<byte> data, bool durable = false, CancellationToken ct = default);

    /// <summary>Makes every acknowledged append durable on every replica.</summary>
    Task FlushAsync(CancellationToken ct = default);

    /// <summary>Reads back bytes this writer appended (including the open chunk).</summary>
    Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default);

    /// <summary>Seals the open chunk and records the final length at the master. The file stays appendable by a new lease.</summary>
    Task CloseAsync(CancellationToken ct = default);
}

public interface IPanguReader : IAsyncDisposable
{
    string Path { get; }
    long Length { get; }

    /// <summary>Reads up to buffer.Length bytes at offset; returns 0 at end of file. Verifies checksums and fails over between replicas.</summary>
    Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default);
}

public sealed record PanguVolumeGuard(string Volume, ulong Epoch);

public sealed record PanguReplica(string ChunkServerId, string Node, string Rack, string Address, bool Bad);

public sealed record PanguChunk(ulong Id, long FileOffset, long Length, bool Sealed, bool PlacementDegraded, IReadOnlyList<PanguReplica> Replicas);

public sealed record PanguFileInfo(string Path, long Length, int Replicas, ulong Epoch, IReadOnlyList<PanguChunk> Chunks);

public sealed record PanguDirectoryEntry(string Path, bool IsDirectory, long Length);

public enum PanguErrorKind { NotFound, AlreadyExists, InvalidArgument, Unavailable, NoSpace, Corrupt, Internal }

/// <summary>A file-system error with a kind to classify by and the path it concerns.</summary>
public class PanguException(PanguErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public PanguErrorKind Kind { get; } = kind;
}

/// <summary>A newer writer holds the lease: this writer's appends can never land again.</summary>
public sealed class FencedException(string path, ulong epoch, Exception? inner = null)
    : Exception($"writer of {path} with epoch {epoch} was fenced by a newer lease", inner)
{
    public string Path { get; } = path;
    public ulong Epoch { get; } = epoch;
}
