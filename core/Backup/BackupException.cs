namespace FeitianK8s.Core.Backup;

public enum BackupErrorKind
{
    /// <summary>A malformed target, id, name or option: nothing was done.</summary>
    InvalidArgument,
    /// <summary>No such backup, snapshot or bucket.</summary>
    NotFound,
    /// <summary>The volume to restore into exists already.</summary>
    AlreadyExists,
    /// <summary>An object in the target does not verify (manifest that does not parse, block whose hash differs).</summary>
    Corrupt,
    /// <summary>The object store or the cluster could not be reached or refused the request.</summary>
    Unavailable,
}

/// <summary>A backup operation that failed, with a kind to map to an exit code; the message names the object and the target.</summary>
public sealed class BackupException(BackupErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public BackupErrorKind Kind { get; } = kind;
}
