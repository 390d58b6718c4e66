using FeitianK8s.Master.Log;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;
using LogEntry = DotNext.Net.Cluster.Consensus.Raft.StateMachine.LogEntry;
using DotNext.IO;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Raft;

/// <summary>
/// The Raft state machine of a master: applies committed <see cref="MasterCommandBatch"/>
/// entries to the deterministic <see cref="MasterStateMachine"/> in log order, persists it
/// as a framed <see cref="MasterSnapshot"/> (the master's snapshot format) every
/// <c>snapshotEvery</c> commands, and restores from such a snapshot at start or when the
/// leader installs one. Commands get consecutive indexes of their own (the state's
/// LastIndex); Raft's no-op and configuration entries carry none.
/// Readers take the read lock; apply and restore take the write lock.
/// </summary>
public sealed class MasterReplica : SimpleStateMachine
{
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private readonly int _snapshotEvery;
    private readonly ILogger _logger;
    private MasterStateMachine _state = new();
    private long _sinceSnapshot;

    public MasterReplica(DirectoryInfo location, int snapshotEvery, ILogger logger)
        : base(location)
    {
        _snapshotEvery = Math.Max(1, snapshotEvery);
        _logger = logger;
    }

    public event Action<MasterCommand.KindOneofCase, bool>? CommandApplied;

    /// <summary>Runs a query against the state under the read lock.</summary>
    public T Read<T>(Func<MasterStateMachine, T> query)
    {
        _lock.EnterReadLock();
        try
        {
            return query(_state);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    protected override ValueTask<bool> ApplyAsync(LogEntry entry, CancellationToken token)
    {
        if (entry.IsConfiguration)
        {
            return new(false);
        }
        if (!entry.TryGetPayload(out var payload))
        {
            throw new InvalidDataException($"Raft log entry {entry.Index} has no readable payload");
        }
        if (payload.IsEmpty)
        {
            // A leader's no-op entry.
            return new(false);
        }
        var batch = MasterCommandBatch.Parser.ParseFrom(payload);
        var results = new ApplyResult[batch.Commands.Count];
        _lock.EnterWriteLock();
        try
        {
            for (var i = 0; i < batch.Commands.Count; i++)
            {
                results[i] = _state.Apply(_state.LastIndex + 1, batch.Commands[i]);
            }
        }
        finally
        {
            _lock.ExitWriteLock();
        }
        for (var i = 0; i < batch.Commands.Count; i++)
        {
            CommandApplied?.Invoke(batch.Commands[i].KindCase, results[i].IsOk);
        }
        // The leader that proposed this entry waits for its results.
        (entry.Context as Proposal)?.Complete(results);
        _sinceSnapshot += batch.Commands.Count;
        if (_sinceSnapshot >= _snapshotEvery)
        {
            _sinceSnapshot = 0;
            return new(true);
        }
        return new(false);
    }

    protected override ValueTask PersistAsync(IAsyncBinaryWriter writer, CancellationToken token)
    {
        var snapshot = Read(state => state.ToSnapshot());
        using var framed = new MemoryStream();
        RecordFraming.Write(framed, snapshot.ToByteArray());
        _logger.LogInformation("Writing a master snapshot at command {Index}", snapshot.LastIndex);
        return writer.Invoke(framed.ToArray(), token);
    }

    protected override async ValueTask RestoreAsync(FileInfo snapshotFile, CancellationToken token)
    {
        var data = await File.ReadAllBytesAsync(snapshotFile.FullName, token).ConfigureAwait(false);
        if (!RecordFraming.TryRead(data, 0, out var payload, out _))
        {
            throw new InvalidDataException($"master snapshot {snapshotFile.FullName} is torn or corrupt");
        }
        var restored = MasterStateMachine.FromSnapshot(MasterSnapshot.Parser.ParseFrom(payload));
        _lock.EnterWriteLock();
        try
        {
            _state = restored;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
        _logger.LogInformation("Restored the master state at command {Index} from {Snapshot}", restored.LastIndex, snapshotFile.FullName);
    }
}

/// <summary>A batch a leader replicates; completed by <see cref="MasterReplica"/> when the entry is applied.</summary>
public sealed class Proposal
{
    public TaskCompletionSource<ApplyResult[]> Results { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Complete(ApplyResult[] results) => Results.TrySetResult(results);
}
