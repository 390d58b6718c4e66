using System.Diagnostics;
using System.Threading.Channels;
using FeitianK8s.Master.Log;
using FeitianK8s.Proto.MasterLog;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.State;

/// <summary>
/// The single writer in front of <see cref="MasterStateMachine"/>: commands are queued,
/// applied in order by one loop, appended to the log and fsync'd as one batch (group
/// commit), and only then acknowledged. The write lock is held from the first apply of a
/// batch until its fsync returned, so readers never observe a change that is not durable.
/// If the log cannot be written the master stops accepting anything (fail-stop): memory
/// would otherwise be ahead of the disk.
/// </summary>
public sealed class MasterMetadata : IAsyncDisposable
{
    private const int MaxBatch = 512;

    private readonly MasterStateMachine _state;
    private readonly MasterLogStore _log;
    private readonly TimeProvider _clock;
    private readonly ILogger _logger;
    private readonly int _snapshotEvery;
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private readonly Channel<PendingCommand> _queue = Channel.CreateUnbounded<PendingCommand>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _loop;
    private ulong _lastSnapshotIndex;
    private long _sinceSnapshot;
    private Exception? _failure;

    public event Action<MasterCommand.KindOneofCase, bool>? CommandApplied;
    public event Action<TimeSpan, int>? BatchCommitted;

    private MasterMetadata(MasterStateMachine state, MasterLogStore log, TimeProvider clock, int snapshotEvery, ILogger logger)
    {
        _state = state;
        _log = log;
        _clock = clock;
        _snapshotEvery = Math.Max(1, snapshotEvery);
        _logger = logger;
        _lastSnapshotIndex = state.LastIndex;
        _loop = Task.Run(RunAsync);
    }

    public static MasterMetadata Open(string directory, TimeProvider clock, int snapshotEvery, ILogger logger, Func<Stream, Stream>? decorateLogWrites = null)
    {
        var (log, state) = MasterLogStore.Open(directory, logger, decorateLogWrites);
        return new MasterMetadata(state, log, clock, snapshotEvery, logger);
    }

    /// <summary>False once the log failed: the master serves nothing until restarted.</summary>
    public bool IsHealthy => _failure is null;

    /// <summary>Runs a query against the state under the read lock.</summary>
    public T Read<T>(Func<MasterStateMachine, T> query)
    {
        ThrowIfFailed();
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

    /// <summary>Applies and durably logs a command; completes after the fsync.</summary>
    public async Task<ApplyResult> SubmitAsync(MasterCommand command, CancellationToken ct = default)
    {
        ThrowIfFailed();
        var pending = new PendingCommand(command);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(MasterMetadata), "the master is shutting down");
        }
        return await pending.Completion.Task.WaitAsync(ct).ConfigureAwait(false);
    }

    private void ThrowIfFailed()
    {
        if (_failure is not null)
        {
            throw new MasterStoppedException("the master's log failed; it accepts nothing until restarted", _failure);
        }
    }

    private async Task RunAsync()
    {
        var batch = new List<PendingCommand>(MaxBatch);
        while (await _queue.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var next))
            {
                batch.Add(next);
            }
            ProcessBatch(batch);
        }
    }

    private void ProcessBatch(List<PendingCommand> batch)
    {
        if (_failure is not null)
        {
            FailAll(batch, _failure);
            return;
        }
        var entries = new List<LogEntry>(batch.Count);
        var results = new ApplyResult[batch.Count];
        var started = Stopwatch.GetTimestamp();
        _lock.EnterWriteLock();
        try
        {
            for (var i = 0; i < batch.Count; i++)
            {
                var command = batch[i].Command;
                Propose(command);
                var index = _state.LastIndex + 1;
                results[i] = _state.Apply(index, command);
                if (results[i].IsOk)
                {
                    entries.Add(new LogEntry { Index = index, Command = command });
                }
                CommandApplied?.Invoke(command.KindCase, results[i].IsOk);
            }
            if (entries.Count > 0)
            {
                _log.Append(entries);
            }
        }
        catch (Exception error)
        {
            _failure = error;
            _logger.LogCritical(error, "Writing the master log failed; the master stops accepting commands");
            FailAll(batch, error);
            return;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
        BatchCommitted?.Invoke(Stopwatch.GetElapsedTime(started), entries.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Completion.TrySetResult(results[i]);
        }
        _sinceSnapshot += entries.Count;
        if (_sinceSnapshot >= _snapshotEvery)
        {
            TrySnapshot();
        }
    }

    /// <summary>
    /// What the proposer decides before logging: the time, and the next chunk id for an
    /// allocation (read from the state by the single writer, so ids never collide).
    /// </summary>
    private void Propose(MasterCommand command)
    {
        command.UnixMs = _clock.GetUtcNow().ToUnixTimeMilliseconds();
        if (command.KindCase == MasterCommand.KindOneofCase.AllocateChunk && command.AllocateChunk.ChunkId == 0)
        {
            command.AllocateChunk.ChunkId = _state.NextChunkId;
        }
    }

    /// <summary>Writes a snapshot; the writer loop is the only mutator, so reading without the lock is safe here.</summary>
    private void TrySnapshot()
    {
        if (_failure is not null || _state.LastIndex == _lastSnapshotIndex)
        {
            return;
        }
        try
        {
            var snapshot = _state.ToSnapshot();
            _log.WriteSnapshot(snapshot);
            _lastSnapshotIndex = snapshot.LastIndex;
            _sinceSnapshot = 0;
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            // The log still holds every command; a later snapshot will try again.
            _logger.LogError(error, "Writing a snapshot at log index {Index} failed", _state.LastIndex);
        }
    }

    private static void FailAll(List<PendingCommand> batch, Exception error)
    {
        foreach (var pending in batch)
        {
            pending.Completion.TrySetException(new MasterStoppedException("the master's log failed", error));
        }
    }

    /// <summary>Drains queued commands, writes a final snapshot and closes the log.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
        TrySnapshot();
        _log.Dispose();
        _lock.Dispose();
    }

    private sealed class PendingCommand(MasterCommand command)
    {
        public MasterCommand Command { get; } = command;
        public TaskCompletionSource<ApplyResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>The master's log failed or it is shutting down: callers see UNAVAILABLE.</summary>
public sealed class MasterStoppedException(string message, Exception? inner = null) : Exception(message, inner);
