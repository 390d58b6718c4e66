using FeitianK8s.Core.Common;

namespace FeitianK8s.Master.State;

public enum MasterErrorCode
{
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    ResourceExhausted,
    /// <summary>Retry shortly: the master cannot answer yet (e.g. its chunk servers are still reporting).</summary>
    Unavailable,
}

/// <summary>Reasons the master adds to <see cref="ErrorReasons"/> for its own preconditions.</summary>
public static class MasterErrorReasons
{
    public const string IsDirectory = "is-directory";
    public const string NotADirectory = "not-a-directory";
    public const string ParentIsFile = "parent-is-file";
    public const string Shrink = "shrink";
    public const string LastGoodReplica = "last-good-replica";
}

/// <summary>A refused command or query: a code, a machine-readable reason and a message with context.</summary>
public sealed record MasterError(MasterErrorCode Code, string Reason, string Message)
{
    public static MasterError NotFound(string message) => new(MasterErrorCode.NotFound, ErrorReasons.NotFound, message);
    public static MasterError AlreadyExists(string message) => new(MasterErrorCode.AlreadyExists, ErrorReasons.AlreadyExists, message);
    public static MasterError Invalid(string message) => new(MasterErrorCode.InvalidArgument, ErrorReasons.InvalidArgument, message);
    public static MasterError TooLarge(string message) => new(MasterErrorCode.InvalidArgument, ErrorReasons.TooLarge, message);
    public static MasterError StaleEpoch(string message) => new(MasterErrorCode.FailedPrecondition, ErrorReasons.StaleEpoch, message);
    public static MasterError Precondition(string reason, string message) => new(MasterErrorCode.FailedPrecondition, reason, message);
    public static MasterError NoChunkServers(string message) => new(MasterErrorCode.ResourceExhausted, ErrorReasons.NoChunkServers, message);
    public static MasterError ChunkServersReporting(string message) => new(MasterErrorCode.Unavailable, ErrorReasons.ChunkServersReporting, message);
}

/// <summary>Thrown by query helpers; handlers map it to the wire status.</summary>
public sealed class MasterException(MasterError error) : Exception(error.Message)
{
    public MasterError Error { get; } = error;
}

/// <summary>Outcome of applying one command: an error (state unchanged) or an optional value.</summary>
public readonly record struct ApplyResult(MasterError? Error, object? Value)
{
    public static ApplyResult Ok(object? value = null) => new(null, value);
    public static ApplyResult Fail(MasterError error) => new(error, null);
    public bool IsOk => Error is null;
}
