using System.Diagnostics;
using System.Net;
using System.Threading.Channels;
using DotNext.Net.Cluster;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.Membership;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using DotNext.Threading;
using FeitianK8s.Master.Raft;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.State;

/// <summary>
/// The master's metadata replicated by Raft among the masters (DotNext.Net.Cluster, TCP
/// transport, persistent WAL). One writer loop on the leader batches queued commands,
/// stamps what only the proposer may choose (time, chunk ids), replicates the batch as one
/// log entry and acknowledges each command only after the entry is committed by a majority
/// and applied by <see cref="MasterReplica"/>. Chunk ids and epochs are therefore decided by
/// committed entries only: a deposed leader's uncommitted proposal never reaches a client.
/// Reads (<see cref="Read"/>) are served by the leader alone, under its Raft leader lease and
/// only once it has applied every entry committed before its term (linearizable).
/// Any other member refuses with <see cref="NotLeaderException"/> naming the leader.
/// </summary>
public sealed class MasterMetadata : IAsyncDisposable
{
    private const int MaxBatch = 512;
    private const string GrpcMetadataKey = "grpc";
    private const string HttpMetadataKey = "http";

    private readonly MasterReplica _replica;
    private readonly WriteAheadLog _wal;
    private readonly RaftCluster _cluster;
    private readonly FileStream _lockFile;
    private readonly TimeProvider _clock;
    private readonly ILogger _logger;
    private readonly string _grpcAddress;
    private readonly string _raftEndpoint;
    private readonly Channel<PendingCommand> _queue = Channel.CreateUnbounded<PendingCommand>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private Task _loop = Task.CompletedTask;
    private long _readyTerm = -1;
    private readonly AsyncAutoResetEvent _leadershipChanged = new(initialState: false);
    private static readonly TimeSpan ReadinessRecheck = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan ReadinessRetry = TimeSpan.FromMilliseconds(25);
    private volatile string? _leaderAddress;
    private volatile string? _leaderHttpAddress;
    private string? _httpAddress;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _memberGrpcAddresses = new(StringComparer.Ordinal);
    private int _disposed;
    private bool _singleMember;

    public event Action<MasterCommand.KindOneofCase, bool>? CommandApplied;
    public event Action<TimeSpan, int>? BatchCommitted;

    private MasterMetadata(MasterReplica replica, WriteAheadLog wal, RaftCluster cluster, FileStream lockFile, TimeProvider clock, string grpcAddress, string raftEndpoint, ILogger logger)
    {
        _replica = replica;
        _wal = wal;
        _cluster = cluster;
        _lockFile = lockFile;
        _clock = clock;
        _grpcAddress = grpcAddress;
        _raftEndpoint = raftEndpoint;
        _logger = logger;
        _replica.CommandApplied += (kind, ok) => CommandApplied?.Invoke(kind, ok);
    }

    /// <summary>
    /// Opens the data directory (snapshot and WAL), joins the Raft group and starts the
    /// writer loop. <paramref name="grpcAddress"/> is what followers name as the leader.
    /// </summary>
    public static async Task<MasterMetadata> StartAsync(MasterRaftSettings settings, string directory, string grpcAddress, TimeProvider clock, int snapshotEvery, ILoggerFactory loggers, CancellationToken ct = default)
    {
        var logger = loggers.CreateLogger<MasterMetadata>();
        Directory.CreateDirectory(directory);
        var lockFile = Lock(directory);
        MasterReplica? replica = null;
        WriteAheadLog? wal = null;
        RaftCluster? cluster = null;
        try
        {
            replica = new MasterReplica(new DirectoryInfo(Path.Combine(directory, "snapshots")), snapshotEvery, loggers.CreateLogger<MasterReplica>());
            await replica.RestoreAsync(ct).ConfigureAwait(false);
            wal = OpenWriteAheadLog(directory, replica);

            var listen = new IPEndPoint(IPAddress.Parse(settings.ListenAddress), EndPointPort(settings.Peers.Self));
            var storage = new EndPointConfigurationStorage();
            var members = storage.CreateInitialConfigurationBuilder();
            foreach (var member in settings.Peers.Members)
            {
                members.Add(member);
            }
            members.Build();
            var configuration = new RaftCluster.TcpConfiguration(listen)
            {
                ConfigurationStorage = storage,
                PublicEndPoint = settings.Peers.Self,
                LowerElectionTimeout = (int)settings.ElectionTimeout.TotalMilliseconds,
                UpperElectionTimeout = (int)(settings.ElectionTimeout.TotalMilliseconds * 2),
                // Long enough to install a snapshot on a loaded machine; a dead peer refuses connections at once.
                RequestTimeout = TimeSpan.FromSeconds(5),
                // With TLS the handshake counts too: a busy machine needs longer than an election timeout for it.
                ConnectTimeout = settings.Tls is null ? settings.ElectionTimeout : TimeSpan.FromTicks(Math.Max(settings.ElectionTimeout.Ticks, TimeSpan.FromSeconds(2).Ticks)),
                ColdStart = false,
                // Linearizable reads on the leader without a round trip: its lease (shorter than an election timeout).
                IsLeaderLeaseEnabled = true,
                LoggerFactory = loggers,
                SslOptions = settings.Tls is { } tls ? RaftTls(tls) : null,
            };
            configuration.Metadata[GrpcMetadataKey] = grpcAddress;
            if (settings.HttpAddress is { } httpAddress)
            {
                configuration.Metadata[HttpMetadataKey] = httpAddress;
            }

            cluster = new RaftCluster(configuration) { AuditTrail = wal };
            var metadata = new MasterMetadata(replica, wal, cluster, lockFile, clock, grpcAddress, RaftPeers.Format(settings.Peers.Self), logger)
            {
                _singleMember = settings.Peers.Members.Count == 1,
                _httpAddress = settings.HttpAddress,
            };
            cluster.LeaderChanged += metadata.OnLeaderChanged;
            await cluster.StartAsync(ct).ConfigureAwait(false);
            metadata._loop = Task.WhenAll(Task.Run(metadata.RunAsync), Task.Run(metadata.ReadinessLoopAsync));
            logger.LogInformation("Master joined the Raft group {Members} as {Self}",
                string.Join(",", settings.Peers.Members.Select(RaftPeers.Format)), RaftPeers.Format(settings.Peers.Self));
            return metadata;
        }
        catch
        {
            if (cluster is not null)
            {
                cluster.Dispose();
            }
            if (wal is not null)
            {
                await wal.DisposeAsync().ConfigureAwait(false);
            }
            if (replica is not null)
            {
                await replica.DisposeAsync().ConfigureAwait(false);
            }
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>The Raft log of a master in <paramref name="directory"/>, applying to <paramref name="replica"/>.</summary>
    internal static MasterWriteAheadLog OpenWriteAheadLog(string directory, MasterReplica replica) => new(new WriteAheadLog.Options
    {
        Location = Path.Combine(directory, "wal"),
        HashAlgorithm = WriteAheadLog.IntegrityHashAlgorithm.Crc32,
    }, replica);

    /// <summary>Raft over TLS: each side presents its master certificate and admits only a master certificate of the cluster CA.</summary>
    private static DotNext.Net.Security.SslOptions RaftTls(Core.Security.ComponentTls tls) => new()
    {
        ServerOptions = tls.RawServerOptions(Core.Security.ComponentRoles.Master),
        ClientOptions = tls.ClientOptions(Core.Security.ComponentRoles.Master),
    };

    private static int EndPointPort(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.Port,
        DnsEndPoint dns => dns.Port,
        _ => throw new ArgumentException($"unsupported endpoint {endPoint}"),
    };

    /// <summary>One master per data directory: an exclusive lock on a file held while open.</summary>
    private static FileStream Lock(string directory)
    {
        var path = Path.Combine(directory, "LOCK");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException error)
        {
            throw new IOException($"data directory {directory} is in use by another master ({path} is locked)", error);
        }
    }

    /// <summary>False once stopped.</summary>
    public bool IsHealthy => _disposed == 0;

    public bool IsLeader => !_cluster.LeadershipToken.IsCancellationRequested;

    /// <summary>Raised with the term once this member leads and has applied everything committed before it.</summary>
    public event Action<long>? BecameLeader;

    /// <summary>The leader's gRPC address when known.</summary>
    public string? LeaderAddress => IsLeader ? _grpcAddress : _leaderAddress;

    /// <summary>The leader's HTTP address (metrics, web console) when known.</summary>
    public string? LeaderHttpAddress => IsLeader ? _httpAddress : _leaderHttpAddress;

    /// <summary>
    /// The gRPC address of every member of the Raft group, sorted (read from each member's Raft
    /// metadata, remembered; a member never reached yet is named by its Raft endpoint).
    /// </summary>
    public async Task<IReadOnlyList<string>> MemberGrpcAddressesAsync(CancellationToken ct)
    {
        var addresses = await Task.WhenAll(_cluster.Members.Select(async member =>
        {
            var key = member.EndPoint.ToString() ?? "";
            if (!member.IsRemote)
            {
                return _grpcAddress;
            }
            if (_memberGrpcAddresses.TryGetValue(key, out var known))
            {
                return known;
            }
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(2));
                var metadata = await member.GetMetadataAsync(refresh: false, timeout.Token).ConfigureAwait(false);
                if (metadata.TryGetValue(GrpcMetadataKey, out var address))
                {
                    _memberGrpcAddresses[key] = address;
                    return address;
                }
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                _logger.LogDebug(error, "Cannot read the metadata of master {EndPoint}", key);
            }
            return member.EndPoint is { } endPoint ? $"http://{RaftPeers.Format(endPoint)}" : key;
        })).ConfigureAwait(false);
        return addresses.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>This member's Raft state, as reported by GetMasterState and `feitian status`.</summary>
    public RaftState State()
    {
        var role = IsLeader ? "leader" : _cluster.Leader is null ? "candidate" : "follower";
        return new RaftState(role, (ulong)Math.Max(0, _cluster.Term), (ulong)Math.Max(0, _wal.LastCommittedEntryIndex),
            (ulong)Math.Max(0, _wal.LastAppliedIndex), _raftEndpoint, LeaderAddress);
    }

    /// <summary>
    /// A linearizable query: only the leader answers, while it holds its Raft lease and has
    /// applied everything committed before its term. Everyone else throws <see cref="NotLeaderException"/>.
    /// </summary>
    public T Read<T>(Func<MasterStateMachine, T> query)
    {
        ThrowIfStopped();
        if (!IsReadyLeader())
        {
            throw NotLeader();
        }
        return _replica.Read(query);
    }

    /// <summary>A query of this member's local state, whatever its role (metrics); may be stale on a follower.</summary>
    public T ReadLocal<T>(Func<MasterStateMachine, T> query)
    {
        ThrowIfStopped();
        return _replica.Read(query);
    }

    /// <summary>Replicates a command; completes once it is committed by a majority and applied here.</summary>
    public async Task<ApplyResult> SubmitAsync(MasterCommand command, CancellationToken ct = default)
    {
        ThrowIfStopped();
        if (!IsLeader)
        {
            throw NotLeader();
        }
        var pending = new PendingCommand(command);
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(MasterMetadata), "the master is shutting down");
        }
        return await pending.Completion.Task.WaitAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Waits until this member is the leader and ready to serve (tests, `feitian up`).</summary>
    public async Task WaitForLeadershipAsync(CancellationToken ct)
    {
        while (!IsReadyLeader())
        {
            ct.ThrowIfCancellationRequested();
            if (IsLeader)
            {
                await EnsureReadyAsync(ct).ConfigureAwait(false);
            }
            else
            {
                await Task.Delay(20, ct).ConfigureAwait(false);
            }
        }
    }

    private bool IsReadyLeader()
    {
        if (!IsLeader || Interlocked.Read(ref _readyTerm) != _cluster.Term)
        {
            return false;
        }
        // A group of one is its own majority: no other leader can exist, so no lease is needed
        // (a lease renewed every few milliseconds would only lapse under CPU pressure).
        return _singleMember || (_cluster.TryGetLeaseToken(out var lease) && !lease.IsCancellationRequested);
    }

    /// <summary>
    /// A new leader first applies every entry committed before its term (its no-op entry
    /// commits them): before that, its state could miss acknowledged commands.
    /// </summary>
    private async Task EnsureReadyAsync(CancellationToken ct)
    {
        var term = _cluster.Term;
        if (Interlocked.Read(ref _readyTerm) == term)
        {
            return;
        }
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _cluster.LeadershipToken, _stopping.Token);
        await _cluster.ApplyReadBarrierAsync(linked.Token).ConfigureAwait(false);
        if (IsLeader && _cluster.Term == term)
        {
            Interlocked.Exchange(ref _readyTerm, term);
            BecameLeader?.Invoke(term);
            _logger.LogInformation("Master {Address} is the leader of term {Term}, state at command {Index}",
                _grpcAddress, term, _replica.Read(s => s.LastIndex));
        }
    }

    private void OnLeaderChanged(ICluster cluster, IClusterMember? leader)
    {
        _leadershipChanged.Set();
        _leaderAddress = null;
        _leaderHttpAddress = null;
        if (leader is null)
        {
            return;
        }
        if (!leader.IsRemote)
        {
            _leaderAddress = _grpcAddress;
            return;
        }
        _ = Task.Run(() => LearnLeaderAddressAsync(leader));
    }

    /// <summary>
    /// Makes a newly elected leader ready (see <see cref="EnsureReadyAsync"/>) without waiting for a first write.
    /// It wakes on a leader change (and rechecks every <see cref="ReadinessRecheck"/> in case one was missed), not
    /// on a short timer: an idle master then costs three processes' thread pools no wake-ups.
    /// </summary>
    private async Task ReadinessLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (IsLeader && Interlocked.Read(ref _readyTerm) != _cluster.Term)
                {
                    await EnsureReadyAsync(_stopping.Token).ConfigureAwait(false);
                    continue;
                }
                await _leadershipChanged.WaitAsync(ReadinessRecheck, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                // Leadership lost or quorum unreachable meanwhile: try again soon while still leader.
                _logger.LogDebug(error, "The leader's read barrier did not complete");
                try
                {
                    await Task.Delay(ReadinessRetry, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    private async Task LearnLeaderAddressAsync(IClusterMember leader)
    {
        for (var attempt = 0; attempt < 20 && !_stopping.IsCancellationRequested; attempt++)
        {
            try
            {
                var metadata = await leader.GetMetadataAsync(refresh: attempt > 0, _stopping.Token).ConfigureAwait(false);
                if (metadata.TryGetValue(GrpcMetadataKey, out var address) && ReferenceEquals(_cluster.Leader, leader))
                {
                    _leaderHttpAddress = metadata.GetValueOrDefault(HttpMetadataKey);
                    _leaderAddress = address;
                    _logger.LogInformation("The master leader is {Leader} ({RaftEndpoint})", address, leader.EndPoint);
                }
                return;
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                _logger.LogDebug(error, "Cannot read the leader's metadata yet");
                try
                {
                    await Task.Delay(100, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private NotLeaderException NotLeader() => new(LeaderAddress);

    private void ThrowIfStopped()
    {
        if (_disposed != 0)
        {
            throw new MasterStoppedException("the master is shutting down");
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
            try
            {
                await ProcessBatchAsync(batch).ConfigureAwait(false);
            }
            catch (Exception error) when (error is not OutOfMemoryException)
            {
                _logger.LogWarning(error, "Replicating {Count} master command(s) failed", batch.Count);
                FailAll(batch, error is NotLeaderException ? error : NotLeader());
            }
        }
    }

    private async Task ProcessBatchAsync(List<PendingCommand> batch)
    {
        if (_stopping.IsCancellationRequested)
        {
            FailAll(batch, new MasterStoppedException("the master is shutting down"));
            return;
        }
        if (!IsLeader)
        {
            FailAll(batch, NotLeader());
            return;
        }
        var started = Stopwatch.GetTimestamp();
        await EnsureReadyAsync(CancellationToken.None).ConfigureAwait(false);
        var entry = new MasterCommandBatch();
        // Everything applied so far is this leader's own or committed before its term: the
        // next chunk id of the state is not issued yet.
        var nextChunkId = _replica.Read(state => state.NextChunkId);
        var now = _clock.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var pending in batch)
        {
            var command = pending.Command;
            command.UnixMs = now;
            if (command.KindCase == MasterCommand.KindOneofCase.AllocateChunk)
            {
                command.AllocateChunk.ChunkId = nextChunkId++;
            }
            entry.Commands.Add(command);
        }
        var proposal = new Proposal();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(_cluster.LeadershipToken, _stopping.Token);
        var committed = true;
        try
        {
            // Completes once the entry is committed by a majority; throws when leadership is lost first.
            await RaftClusterExtensions.ReplicateAsync(_cluster, new ReadOnlyMemory<byte>(entry.ToByteArray()), proposal, linked.Token).ConfigureAwait(false);
        }
        catch (Exception error) when (error is DotNext.Net.Cluster.Consensus.Raft.NotLeaderException or OperationCanceledException or QuorumUnreachableException or InvalidOperationException)
        {
            committed = false;
        }
        if (!committed)
        {
            FailAll(batch, NotLeader());
            return;
        }
        var results = await proposal.Results.Task.WaitAsync(TimeSpan.FromSeconds(60), _stopping.Token).ConfigureAwait(false);
        BatchCommitted?.Invoke(Stopwatch.GetElapsedTime(started), batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            batch[i].Completion.TrySetResult(results[i]);
        }
    }

    private static void FailAll(List<PendingCommand> batch, Exception error)
    {
        foreach (var pending in batch)
        {
            pending.Completion.TrySetException(error);
        }
    }

    /// <summary>Stops the writer loop, leaves the Raft group and closes the WAL.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _queue.Writer.TryComplete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        try
        {
            await _cluster.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OutOfMemoryException)
        {
            _logger.LogWarning(error, "Stopping the Raft member failed");
        }
        _cluster.Dispose();
        await _wal.DisposeAsync().ConfigureAwait(false);
        await _replica.DisposeAsync().ConfigureAwait(false);
        _lockFile.Dispose();
        _stopping.Dispose();
    }

    private sealed class PendingCommand(MasterCommand command)
    {
        public MasterCommand Command { get; } = command;
        public TaskCompletionSource<ApplyResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>How this master takes part in the Raft group.</summary>
public sealed record MasterRaftSettings(RaftPeers Peers, string ListenAddress, TimeSpan ElectionTimeout)
{
    /// <summary>This master's HTTP address (console, metrics), published to the other members.</summary>
    public string? HttpAddress { get; init; }

    /// <summary>With TLS, Raft messages go over TLS and only master certificates of the cluster CA are admitted, both ways.</summary>
    public Core.Security.ComponentTls? Tls { get; init; }
}

/// <summary>One member's Raft state.</summary>
public sealed record RaftState(string Role, ulong Term, ulong CommitIndex, ulong AppliedIndex, string RaftEndpoint, string? LeaderAddress);

/// <summary>This master is not the leader (or not ready yet): callers see UNAVAILABLE with reason not-leader.</summary>
public sealed class NotLeaderException(string? leaderAddress)
    : Exception(leaderAddress is null ? "this master is not the leader and the leader is not known yet" : $"this master is not the leader; the leader is {leaderAddress}")
{
    public string? LeaderAddress { get; } = leaderAddress;
}

/// <summary>The master is shutting down: callers see UNAVAILABLE.</summary>
public sealed class MasterStoppedException(string message, Exception? inner = null) : Exception(message, inner);
