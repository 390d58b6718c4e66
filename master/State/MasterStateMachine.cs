using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;
using FileInfo = FeitianK8s.Proto.Master.FileInfo;

namespace FeitianK8s.Master.State;

/// <summary>
/// The master's metadata: namespace, chunk-server registry, pending chunk deletions, bad
/// replicas and RAF volumes. <see cref="Apply"/> is deterministic: no clock, no randomness,
/// no I/O; everything the proposer chose travels inside the command. A refused command
/// changes nothing (every check runs before the first mutation), so the same sequence of
/// commands always yields the same state and the same snapshot bytes.
/// Not thread-safe: one writer applies, readers synchronize outside.
/// </summary>
public sealed class MasterStateMachine
{
    public const uint MaxReplicas = 5;
    public const ulong VolumeBlockSize = 4096;

    private readonly Dictionary<string, FileRecord> _files = new(StringComparer.Ordinal);
    private readonly SortedSet<string> _paths = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, FileRecord> _chunkOwners = new();
    private readonly Dictionary<string, ChunkServerRecord> _servers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeRecord> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _replicaCounts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SortedSet<ulong>> _pendingDeletions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, VolumeRecord> _volumes = new(StringComparer.Ordinal);
    private ClientSessions _sessions = new();

    /// <summary>Index of the last applied log entry.</summary>
    public ulong LastIndex { get; private set; }

    /// <summary>Chunk ids are issued from this monotonic counter (first id is 1).</summary>
    public ulong NextChunkId { get; private set; } = 1;

    public int FileCount => _files.Count;
    public int ChunkCount => _chunkOwners.Count;
    public int VolumeCount => _volumes.Count;

    /// <summary>The first answer of request (<paramref name="clientId"/>, <paramref name="seq"/>) when it was applied, else null.</summary>
    public ApplyResult? AnswerOf(string clientId, ulong seq) => _sessions.Find(new MasterCommand { ClientId = clientId, RequestSeq = seq });

    public int ClientSessionCount => _sessions.ClientCount;

    // ---------- applying ----------

    /// <summary>Applies the command logged at <paramref name="index"/> (must be LastIndex + 1).</summary>
    public ApplyResult Apply(ulong index, MasterCommand command)
    {
        if (index != LastIndex + 1)
        {
            throw new InvalidOperationException($"log index {index} does not follow the last applied index {LastIndex}");
        }
        // A retried request that was applied already: its first answer, no second effect.
        if (_sessions.Find(command) is { } first)
        {
            LastIndex = index;
            return first;
        }
        var result = command.KindCase switch
        {
            MasterCommand.KindOneofCase.RegisterChunkServer => RegisterChunkServer(command.RegisterChunkServer),
            MasterCommand.KindOneofCase.RegisterNode => RegisterNode(command.RegisterNode),
            MasterCommand.KindOneofCase.AckDeletedChunks => AckDeletedChunks(command.AckDeletedChunks),
            MasterCommand.KindOneofCase.ReportBadReplica => ReportBadReplica(command.ReportBadReplica),
            MasterCommand.KindOneofCase.CreateFile => CreateFile(command.CreateFile, command.UnixMs),
            MasterCommand.KindOneofCase.RenameFile => RenameFile(command.RenameFile, command.UnixMs),
            MasterCommand.KindOneofCase.DeleteFile => DeleteFile(command.DeleteFile),
            MasterCommand.KindOneofCase.OpenForAppend => OpenForAppend(command.OpenForAppend),
            MasterCommand.KindOneofCase.AllocateChunk => AllocateChunk(command.AllocateChunk, command.UnixMs),
            MasterCommand.KindOneofCase.CommitChunk => CommitChunk(command.CommitChunk, command.UnixMs),
            MasterCommand.KindOneofCase.CreateVolume => CreateVolume(command.CreateVolume, command.UnixMs),
            MasterCommand.KindOneofCase.ResizeVolume => ResizeVolume(command.ResizeVolume),
            MasterCommand.KindOneofCase.DeleteVolume => DeleteVolume(command.DeleteVolume),
            MasterCommand.KindOneofCase.AcquireVolumeLease => AcquireVolumeLease(command.AcquireVolumeLease),
            MasterCommand.KindOneofCase.SetVolumeReader => SetVolumeReader(command.SetVolumeReader),
            MasterCommand.KindOneofCase.AddReplica => AddReplica(command.AddReplica),
            MasterCommand.KindOneofCase.RemoveReplica => RemoveReplica(command.RemoveReplica),
            MasterCommand.KindOneofCase.SealChunk => SealChunk(command.SealChunk),
            _ => ApplyResult.Fail(MasterError.Invalid($"unknown command kind {command.KindCase}")),
        };
        if (result.IsOk)
        {
            LastIndex = index;
            _sessions.Record(command, result);
        }
        return result;
    }

    private ApplyResult RegisterChunkServer(RegisterChunkServerCommand command)
    {
        var server = command.Server;
        if (server is null)
        {
            return ApplyResult.Fail(MasterError.Invalid("register command has no chunk server"));
        }
        var error = NameRules.CheckId("chunk server id", server.Id) ?? NameRules.CheckId("chunk server node", server.Node)
            ?? NameRules.CheckId("chunk server address", server.Address);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        _servers[server.Id] = server.Clone();
        _replicaCounts.TryAdd(server.Id, 0);
        return ApplyResult.Ok();
    }

    private ApplyResult RegisterNode(RegisterNodeCommand command)
    {
        var node = command.Node;
        if (node is null)
        {
            return ApplyResult.Fail(MasterError.Invalid("register command has no node"));
        }
        var error = NameRules.CheckId("node id", node.Id);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (node.Rack.Length > NameRules.MaxIdLength)
        {
            return ApplyResult.Fail(MasterError.Invalid($"rack is longer than {NameRules.MaxIdLength} characters"));
        }
        if (node.LeaseSeconds > NodeLeaseRules.MaxLeaseSeconds)
        {
            return ApplyResult.Fail(MasterError.Invalid($"node lease of {node.LeaseSeconds} s is longer than {NodeLeaseRules.MaxLeaseSeconds} s"));
        }
        _nodes[node.Id] = node.Clone();
        return ApplyResult.Ok(FindNode(node.Id));
    }

    /// <summary>A node by id: registered through RegisterNode, or the node of a chunk server; null when neither.</summary>
    public NodeInfo? FindNode(string id)
    {
        var registered = _nodes.GetValueOrDefault(id);
        var server = _servers.Values.Where(s => s.Node == id).OrderBy(s => s.Id, StringComparer.Ordinal).FirstOrDefault();
        if (registered is null && server is null)
        {
            return null;
        }
        return new NodeInfo { Id = id, Rack = registered?.Rack ?? server!.Rack, Registered = registered is not null, ChunkServer = server is not null };
    }

    private ApplyResult AckDeletedChunks(AckDeletedChunksCommand command)
    {
        if (!_servers.ContainsKey(command.ChunkServerId))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk server '{command.ChunkServerId}' is not registered"));
        }
        if (_pendingDeletions.TryGetValue(command.ChunkServerId, out var pending))
        {
            foreach (var id in command.ChunkIds)
            {
                pending.Remove(id);
            }
            if (pending.Count == 0)
            {
                _pendingDeletions.Remove(command.ChunkServerId);
            }
        }
        return ApplyResult.Ok();
    }

    private ApplyResult ReportBadReplica(ReportBadReplicaCommand command)
    {
        if (!_chunkOwners.TryGetValue(command.ChunkId, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} is not referenced by any file"));
        }
        var chunk = file.Chunks.First(c => c.ChunkId == command.ChunkId);
        var replica = chunk.Replicas.FirstOrDefault(r => r.ChunkServerId == command.ChunkServerId);
        if (replica is null)
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} of '{file.Path}' has no replica on chunk server '{command.ChunkServerId}'"));
        }
        replica.Bad = true;
        return ApplyResult.Ok();
    }

    /// <summary>A verified re-replication copy joins the chunk; only sealed chunks at their sealed length take copies.</summary>
    private ApplyResult AddReplica(AddReplicaCommand command)
    {
        if (!_chunkOwners.TryGetValue(command.ChunkId, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} is not referenced by any file"));
        }
        if (!_servers.ContainsKey(command.ChunkServerId))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk server '{command.ChunkServerId}' is not registered"));
        }
        var chunk = file.Chunks.First(c => c.ChunkId == command.ChunkId);
        if (!chunk.Sealed || chunk.Length != command.Length)
        {
            return ApplyResult.Fail(MasterError.Precondition(MasterErrorReasons.Shrink,
                $"copy of chunk {chunk.ChunkId} has length {command.Length}; the chunk is {(chunk.Sealed ? "sealed" : "open")} at {chunk.Length}"));
        }
        if (chunk.Replicas.Any(r => r.ChunkServerId == command.ChunkServerId))
        {
            return ApplyResult.Fail(MasterError.AlreadyExists($"chunk {chunk.ChunkId} already has a replica on '{command.ChunkServerId}'"));
        }
        chunk.Replicas.Add(new ReplicaRecord { ChunkServerId = command.ChunkServerId });
        _replicaCounts[command.ChunkServerId] = _replicaCounts.GetValueOrDefault(command.ChunkServerId) + 1;
        if (_pendingDeletions.TryGetValue(command.ChunkServerId, out var pending) && pending.Remove(chunk.ChunkId) && pending.Count == 0)
        {
            _pendingDeletions.Remove(command.ChunkServerId);
        }
        return ApplyResult.Ok();
    }

    /// <summary>
    /// Drops a replica and queues its deletion on the server. Invariant: the last good replica of a
    /// chunk is never removed (whether a server is dead is soft state the proposer judged; the
    /// log only knows bad flags, so "good" here means not reported bad).
    /// </summary>
    private ApplyResult RemoveReplica(RemoveReplicaCommand command)
    {
        if (!_chunkOwners.TryGetValue(command.ChunkId, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} is not referenced by any file"));
        }
        var chunk = file.Chunks.First(c => c.ChunkId == command.ChunkId);
        var replica = chunk.Replicas.FirstOrDefault(r => r.ChunkServerId == command.ChunkServerId);
        if (replica is null)
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} has no replica on '{command.ChunkServerId}'"));
        }
        if (!replica.Bad && chunk.Replicas.Count(r => !r.Bad) <= 1)
        {
            return ApplyResult.Fail(MasterError.Precondition(MasterErrorReasons.LastGoodReplica,
                $"replica of chunk {chunk.ChunkId} on '{command.ChunkServerId}' is its last good one"));
        }
        chunk.Replicas.Remove(replica);
        _replicaCounts[command.ChunkServerId]--;
        if (!_pendingDeletions.TryGetValue(command.ChunkServerId, out var pending))
        {
            pending = new SortedSet<ulong>();
            _pendingDeletions.Add(command.ChunkServerId, pending);
        }
        pending.Add(chunk.ChunkId);
        return ApplyResult.Ok();
    }

    /// <summary>Seals an open chunk whose writer is gone; the seal rule: never below the committed length.</summary>
    private ApplyResult SealChunk(SealChunkCommand command)
    {
        if (!_chunkOwners.TryGetValue(command.ChunkId, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} is not referenced by any file"));
        }
        var chunk = file.Chunks.First(c => c.ChunkId == command.ChunkId);
        if (chunk.Sealed)
        {
            return chunk.Length == command.Length
                ? ApplyResult.Ok()
                : ApplyResult.Fail(MasterError.Precondition(ErrorReasons.Sealed, $"chunk {chunk.ChunkId} is already sealed at {chunk.Length}"));
        }
        if (command.Length < chunk.Length || command.Length > chunk.MaxLength)
        {
            return ApplyResult.Fail(MasterError.Precondition(MasterErrorReasons.Shrink,
                $"sealing chunk {chunk.ChunkId} at {command.Length} is outside [{chunk.Length}, {chunk.MaxLength}]"));
        }
        chunk.Length = command.Length;
        chunk.Sealed = true;
        return ApplyResult.Ok();
    }

    private ApplyResult CreateFile(CreateFileCommand command, long unixMs)
    {
        var error = NameRules.CheckFilePath(command.Path) ?? CheckReplicas(command.Replicas) ?? CheckGuard(command.Guard)
            ?? CheckNewPath(command.Path);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        var file = new FileRecord
        {
            Path = command.Path,
            Replicas = command.Replicas,
            Epoch = 0,
            CreatedUnixMs = unixMs,
            ModifiedUnixMs = unixMs,
        };
        _files.Add(file.Path, file);
        _paths.Add(file.Path);
        return ApplyResult.Ok(ToFileInfo(file));
    }

    private ApplyResult RenameFile(RenameFileCommand command, long unixMs)
    {
        var error = NameRules.CheckFilePath(command.From) ?? NameRules.CheckFilePath(command.To);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (!_files.TryGetValue(command.From, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"file '{command.From}' does not exist"));
        }
        if (command.From == command.To)
        {
            return ApplyResult.Ok();
        }
        error = CheckNewPath(command.To);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        _files.Remove(file.Path);
        _paths.Remove(file.Path);
        file.Path = command.To;
        file.ModifiedUnixMs = unixMs;
        _files.Add(file.Path, file);
        _paths.Add(file.Path);
        return ApplyResult.Ok();
    }

    private ApplyResult DeleteFile(DeleteFileCommand command)
    {
        var error = NameRules.CheckFilePath(command.Path) ?? CheckGuard(command.Guard);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (!_files.TryGetValue(command.Path, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"file '{command.Path}' does not exist"));
        }
        RemoveFile(file);
        return ApplyResult.Ok();
    }

    private ApplyResult OpenForAppend(OpenForAppendCommand command)
    {
        var error = NameRules.CheckFilePath(command.Path) ?? CheckGuard(command.Guard);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (!_files.TryGetValue(command.Path, out var file))
        {
            return ApplyResult.Fail(MasterError.NotFound($"file '{command.Path}' does not exist"));
        }
        if (command.ClientNode.Length > NameRules.MaxIdLength)
        {
            return ApplyResult.Fail(MasterError.Invalid($"client node is longer than {NameRules.MaxIdLength} characters"));
        }
        // Fencing: every new lease gets an epoch greater than every earlier one.
        file.Epoch++;
        file.WriterNode = command.ClientNode;
        return ApplyResult.Ok(ToFileInfo(file));
    }

    /// <summary>The file at <paramref name="path"/> when <paramref name="epoch"/> is its current lease epoch (fencing), else the error.</summary>
    private (FileRecord? File, MasterError? Error) LeasedFile(string path, ulong epoch)
    {
        var error = NameRules.CheckFilePath(path);
        if (error is not null)
        {
            return (null, error);
        }
        if (!_files.TryGetValue(path, out var file))
        {
            return (null, MasterError.NotFound($"file '{path}' does not exist"));
        }
        return epoch == file.Epoch
            ? (file, null)
            : (null, MasterError.StaleEpoch($"epoch {epoch} of '{file.Path}' is not the current epoch {file.Epoch}"));
    }

    private ApplyResult AllocateChunk(AllocateChunkCommand command, long unixMs)
    {
        var (file, error) = LeasedFile(command.Path, command.Epoch);
        if (file is null)
        {
            return ApplyResult.Fail(error!);
        }
        if (command.ChunkId < NextChunkId)
        {
            return ApplyResult.Fail(MasterError.Invalid($"chunk id {command.ChunkId} was already issued (next is {NextChunkId})"));
        }
        if (command.MaxLength == 0)
        {
            return ApplyResult.Fail(MasterError.Invalid($"chunk {command.ChunkId} has no max length"));
        }
        if (command.ChunkServerIds.Count == 0 || command.ChunkServerIds.Distinct(StringComparer.Ordinal).Count() != command.ChunkServerIds.Count)
        {
            return ApplyResult.Fail(MasterError.Invalid($"chunk {command.ChunkId} needs distinct chunk servers"));
        }
        var unknown = command.ChunkServerIds.FirstOrDefault(id => !_servers.ContainsKey(id));
        if (unknown is not null)
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk server '{unknown}' is not registered"));
        }
        var chunk = new ChunkRecord
        {
            ChunkId = command.ChunkId,
            PlacementDegraded = command.PlacementDegraded,
            MaxLength = command.MaxLength,
        };
        chunk.Replicas.AddRange(command.ChunkServerIds.Select(id => new ReplicaRecord { ChunkServerId = id }));
        file.Chunks.Add(chunk);
        file.ModifiedUnixMs = unixMs;
        NextChunkId = command.ChunkId + 1;
        IndexChunk(file, chunk);
        return ApplyResult.Ok(ToChunkLocation(chunk, FileOffsetOf(file, file.Chunks.Count - 1)));
    }

    private ApplyResult CommitChunk(CommitChunkCommand command, long unixMs)
    {
        var (file, error) = LeasedFile(command.Path, command.Epoch);
        if (file is null)
        {
            return ApplyResult.Fail(error!);
        }
        var chunk = file.Chunks.FirstOrDefault(c => c.ChunkId == command.ChunkId);
        if (chunk is null)
        {
            return ApplyResult.Fail(MasterError.NotFound($"chunk {command.ChunkId} is not a chunk of '{file.Path}'"));
        }
        if (command.Length > chunk.MaxLength)
        {
            return ApplyResult.Fail(MasterError.TooLarge($"length {command.Length} of chunk {chunk.ChunkId} exceeds its max length {chunk.MaxLength}"));
        }
        if (chunk.Sealed && command.Length > chunk.Length)
        {
            return ApplyResult.Fail(MasterError.Precondition(ErrorReasons.Sealed, $"chunk {chunk.ChunkId} of '{file.Path}' is sealed at {chunk.Length}"));
        }
        // A committed length covers acknowledged bytes: sealing below it would drop them.
        if (command.Sealed && command.Length < chunk.Length)
        {
            return ApplyResult.Fail(MasterError.Precondition(MasterErrorReasons.Shrink,
                $"sealing chunk {chunk.ChunkId} of '{file.Path}' at {command.Length} would drop committed bytes up to {chunk.Length}"));
        }
        chunk.Length = Math.Max(chunk.Length, command.Length);
        chunk.Sealed |= command.Sealed;
        file.ModifiedUnixMs = unixMs;
        return ApplyResult.Ok();
    }

    private ApplyResult CreateVolume(CreateVolumeCommand command, long unixMs)
    {
        var error = NameRules.CheckVolumeName(command.Name) ?? CheckVolumeSize(command.Name, command.SizeBytes)
            ?? CheckReplicas(command.Replicas) ?? CheckLabels(command.Labels);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (_volumes.ContainsKey(command.Name))
        {
            return ApplyResult.Fail(MasterError.AlreadyExists($"volume '{command.Name}' already exists"));
        }
        var volume = new VolumeRecord
        {
            Name = command.Name,
            SizeBytes = command.SizeBytes,
            Replicas = command.Replicas,
            Epoch = 0,
            CreatedUnixMs = unixMs,
        };
        volume.Labels.AddRange(command.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => l.Clone()));
        _volumes.Add(volume.Name, volume);
        return ApplyResult.Ok(ToVolumeInfo(volume));
    }

    private ApplyResult ResizeVolume(ResizeVolumeCommand command)
    {
        var error = NameRules.CheckVolumeName(command.Name) ?? CheckVolumeSize(command.Name, command.SizeBytes);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (!_volumes.TryGetValue(command.Name, out var volume))
        {
            return ApplyResult.Fail(MasterError.NotFound($"volume '{command.Name}' does not exist"));
        }
        if (command.SizeBytes < volume.SizeBytes)
        {
            return ApplyResult.Fail(MasterError.Precondition(MasterErrorReasons.Shrink,
                $"volume '{volume.Name}' cannot shrink from {volume.SizeBytes} to {command.SizeBytes} bytes"));
        }
        volume.SizeBytes = command.SizeBytes;
        return ApplyResult.Ok(ToVolumeInfo(volume));
    }

    private ApplyResult DeleteVolume(DeleteVolumeCommand command)
    {
        var error = NameRules.CheckVolumeName(command.Name);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (!_volumes.Remove(command.Name))
        {
            return ApplyResult.Fail(MasterError.NotFound($"volume '{command.Name}' does not exist"));
        }
        foreach (var path in PathsUnder(NameRules.VolumeDirectory(command.Name) + "/").ToList())
        {
            RemoveFile(_files[path]);
        }
        return ApplyResult.Ok();
    }

    private ApplyResult AcquireVolumeLease(AcquireVolumeLeaseCommand command)
    {
        var error = NameRules.CheckVolumeName(command.Name);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (command.Holder.Length > NameRules.MaxIdLength)
        {
            return ApplyResult.Fail(MasterError.Invalid($"lease holder is longer than {NameRules.MaxIdLength} characters"));
        }
        if (!_volumes.TryGetValue(command.Name, out var volume))
        {
            return ApplyResult.Fail(MasterError.NotFound($"volume '{command.Name}' does not exist"));
        }
        // Fencing: the new holder's epoch is greater than every earlier one.
        volume.Epoch++;
        volume.LeaseHolder = command.Holder;
        return ApplyResult.Ok(ToVolumeInfo(volume));
    }

    /// <summary>Adds or removes a lease-free reader node; the list stays sorted so replicas of the state agree byte for byte.</summary>
    private ApplyResult SetVolumeReader(SetVolumeReaderCommand command)
    {
        var error = NameRules.CheckVolumeName(command.Name);
        if (error is not null)
        {
            return ApplyResult.Fail(error);
        }
        if (command.Node.Length is 0 or > NameRules.MaxIdLength)
        {
            return ApplyResult.Fail(MasterError.Invalid($"reader node must be 1 to {NameRules.MaxIdLength} characters"));
        }
        if (!_volumes.TryGetValue(command.Name, out var volume))
        {
            return ApplyResult.Fail(MasterError.NotFound($"volume '{command.Name}' does not exist"));
        }
        var readers = volume.Readers.Where(r => r != command.Node).ToList();
        if (command.Attached)
        {
            readers.Add(command.Node);
        }
        readers.Sort(StringComparer.Ordinal);
        volume.Readers.Clear();
        volume.Readers.AddRange(readers);
        return ApplyResult.Ok(ToVolumeInfo(volume));
    }

    // ---------- checks and helpers ----------

    private static MasterError? CheckReplicas(uint replicas) =>
        replicas is < 1 or > MaxReplicas ? MasterError.Invalid($"replicas must be between 1 and {MaxReplicas}, got {replicas}") : null;

    private static MasterError? CheckVolumeSize(string name, ulong size) =>
        size == 0 || size % VolumeBlockSize != 0
            ? MasterError.Invalid($"size {size} of volume '{name}' is not a positive multiple of {VolumeBlockSize}")
            : null;

    private static MasterError? CheckLabels(IReadOnlyCollection<Label> labels)
    {
        if (labels.Count > NameRules.MaxLabels)
        {
            return MasterError.Invalid($"more than {NameRules.MaxLabels} labels");
        }
        foreach (var label in labels)
        {
            if (label.Key.Length is 0 or > NameRules.MaxLabelKeyLength || label.Value.Length > NameRules.MaxLabelValueLength)
            {
                return MasterError.Invalid($"label '{label.Key}' has an empty or oversize key or value");
            }
        }
        return labels.Select(l => l.Key).Distinct(StringComparer.Ordinal).Count() == labels.Count ? null : MasterError.Invalid("duplicate label keys");
    }

    private MasterError? CheckGuard(Guard? guard)
    {
        if (guard is null || guard.Volume.Length == 0)
        {
            return null;
        }
        if (!_volumes.TryGetValue(guard.Volume, out var volume))
        {
            return MasterError.NotFound($"guard volume '{guard.Volume}' does not exist");
        }
        return volume.Epoch == guard.Epoch
            ? null
            : MasterError.StaleEpoch($"guard epoch {guard.Epoch} of volume '{guard.Volume}' is not the current epoch {volume.Epoch}");
    }

    /// <summary>A new file path must be free, not a directory, and have no file as an ancestor.</summary>
    private MasterError? CheckNewPath(string path)
    {
        if (_files.ContainsKey(path))
        {
            return MasterError.AlreadyExists($"file '{path}' already exists");
        }
        if (IsDirectory(path))
        {
            return MasterError.Precondition(MasterErrorReasons.IsDirectory, $"'{path}' is a directory");
        }
        for (var slash = path.IndexOf('/', 1); slash > 0; slash = path.IndexOf('/', slash + 1))
        {
            var ancestor = path[..slash];
            if (_files.ContainsKey(ancestor))
            {
                return MasterError.Precondition(MasterErrorReasons.ParentIsFile, $"parent '{ancestor}' of '{path}' is a file");
            }
        }
        return null;
    }

    private bool IsDirectory(string path) => PathsUnder(path + "/").Any();

    /// <summary>Paths that start with <paramref name="prefix"/> (which ends with '/').</summary>
    private IEnumerable<string> PathsUnder(string prefix)
    {
        // '0' follows '/' in ordinal order, so the view holds every path starting with the prefix.
        var upper = prefix[..^1] + "0";
        return _paths.GetViewBetween(prefix, upper).Where(p => p.StartsWith(prefix, StringComparison.Ordinal));
    }

    private void RemoveFile(FileRecord file)
    {
        _files.Remove(file.Path);
        _paths.Remove(file.Path);
        foreach (var chunk in file.Chunks)
        {
            _chunkOwners.Remove(chunk.ChunkId);
            foreach (var replica in chunk.Replicas)
            {
                _replicaCounts[replica.ChunkServerId]--;
                if (!_pendingDeletions.TryGetValue(replica.ChunkServerId, out var pending))
                {
                    pending = new SortedSet<ulong>();
                    _pendingDeletions.Add(replica.ChunkServerId, pending);
                }
                pending.Add(chunk.ChunkId);
            }
        }
    }

    private void IndexChunk(FileRecord file, ChunkRecord chunk)
    {
        _chunkOwners[chunk.ChunkId] = file;
        foreach (var replica in chunk.Replicas)
        {
            _replicaCounts[replica.ChunkServerId] = _replicaCounts.GetValueOrDefault(replica.ChunkServerId) + 1;
        }
    }

    private static ulong FileOffsetOf(FileRecord file, int chunkIndex)
    {
        ulong offset = 0;
        for (var i = 0; i < chunkIndex; i++)
        {
            offset += file.Chunks[i].Length;
        }
        return offset;
    }

    // ---------- queries ----------

    public FileInfo StatFile(string path)
    {
        var error = NameRules.CheckFilePath(path);
        if (error is not null)
        {
            throw new MasterException(error);
        }
        return _files.TryGetValue(path, out var file)
            ? ToFileInfo(file)
            : throw new MasterException(MasterError.NotFound($"file '{path}' does not exist"));
    }

    /// <summary>Direct children (files and implied directories) or, recursively, every file below a directory.</summary>
    public List<DirectoryEntry> List(string path, bool recursive)
    {
        var error = NameRules.CheckDirectory(path, out var directory);
        if (error is not null)
        {
            throw new MasterException(error);
        }
        if (_files.ContainsKey(directory))
        {
            throw new MasterException(MasterError.Precondition(MasterErrorReasons.NotADirectory, $"'{directory}' is a file, not a directory"));
        }
        var prefix = directory == "/" ? "/" : directory + "/";
        var entries = new List<DirectoryEntry>();
        var directories = new HashSet<string>(StringComparer.Ordinal);
        foreach (var filePath in prefix == "/" ? _paths : PathsUnder(prefix))
        {
            var rest = filePath[prefix.Length..];
            var slash = rest.IndexOf('/');
            if (recursive || slash < 0)
            {
                entries.Add(new DirectoryEntry { Path = filePath, IsDirectory = false, Length = LengthOf(_files[filePath]) });
            }
            else if (directories.Add(prefix + rest[..slash]))
            {
                entries.Add(new DirectoryEntry { Path = prefix + rest[..slash], IsDirectory = true });
            }
        }
        entries.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        return entries;
    }

    public bool HasChunkServer(string id) => _servers.ContainsKey(id);

    public ChunkServerRecord? FindChunkServer(string id) => _servers.GetValueOrDefault(id);

    public IEnumerable<ChunkServerRecord> ChunkServers => _servers.Values.OrderBy(s => s.Id, StringComparer.Ordinal);

    /// <summary>Nodes registered through RegisterNode (attaching nodes), sorted by id.</summary>
    public IEnumerable<NodeRecord> RegisteredNodes => _nodes.Values.OrderBy(n => n.Id, StringComparer.Ordinal);

    public NodeRecord? FindRegisteredNode(string id) => _nodes.GetValueOrDefault(id);

    public int ReplicaCountOn(string chunkServerId) => _replicaCounts.GetValueOrDefault(chunkServerId);

    public bool IsChunkReferenced(ulong chunkId) => _chunkOwners.ContainsKey(chunkId);

    public IReadOnlyList<ulong> PendingDeletions(string chunkServerId, int max) =>
        _pendingDeletions.TryGetValue(chunkServerId, out var pending) ? pending.Take(max).ToList() : [];

    /// <summary>File replication, epoch and writer node as seen by an allocation (null when the file is missing).</summary>
    public (uint Replicas, ulong Epoch, string WriterNode)? FileLease(string path) =>
        _files.TryGetValue(path, out var file) ? (file.Replicas, file.Epoch, file.WriterNode) : null;

    public VolumeInfo StatVolume(string name)
    {
        var error = NameRules.CheckVolumeName(name);
        if (error is not null)
        {
            throw new MasterException(error);
        }
        return _volumes.TryGetValue(name, out var volume)
            ? ToVolumeInfo(volume)
            : throw new MasterException(MasterError.NotFound($"volume '{name}' does not exist"));
    }

    public List<VolumeInfo> ListVolumes() =>
        _volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).Select(ToVolumeInfo).ToList();

    /// <summary>Chunks with fewer good replicas than the file wants, or whose good replicas span fewer racks.</summary>
    public ulong CountDegradedChunks()
    {
        ulong degraded = 0;
        foreach (var file in _files.Values)
        {
            foreach (var chunk in file.Chunks)
            {
                var good = chunk.Replicas.Where(r => !r.Bad).ToList();
                var racks = good.Select(r => _servers[r.ChunkServerId].Rack).Distinct(StringComparer.Ordinal).Count();
                if (good.Count < file.Replicas || racks < file.Replicas)
                {
                    degraded++;
                }
            }
        }
        return degraded;
    }

    /// <summary>Every chunk with its file's replica count and epoch, for the re-replication planner.</summary>
    public List<Rebuild.ChunkView> ChunkViews()
    {
        var views = new List<Rebuild.ChunkView>(_chunkOwners.Count);
        foreach (var path in _paths)
        {
            var file = _files[path];
            foreach (var chunk in file.Chunks)
            {
                views.Add(new Rebuild.ChunkView(chunk.ChunkId, path, (int)file.Replicas, file.Epoch, chunk.Length, chunk.Sealed,
                    chunk.Replicas.Select(r => new Rebuild.ReplicaView(r.ChunkServerId, r.Bad)).ToList()));
            }
        }
        return views;
    }

    /// <summary>Whether <paramref name="chunkServerId"/> still has to delete <paramref name="chunkId"/>.</summary>
    public bool IsDeletionPending(string chunkServerId, ulong chunkId) =>
        _pendingDeletions.TryGetValue(chunkServerId, out var pending) && pending.Contains(chunkId);

    /// <summary>The chunk's record (live object: read under the read lock only), or null.</summary>
    public (ChunkRecord Chunk, uint Replicas, ulong Epoch)? FindChunk(ulong chunkId)
    {
        if (!_chunkOwners.TryGetValue(chunkId, out var file))
        {
            return null;
        }
        return (file.Chunks.First(c => c.ChunkId == chunkId), file.Replicas, file.Epoch);
    }

    public ulong CountBadReplicas() =>
        (ulong)_files.Values.SelectMany(f => f.Chunks).SelectMany(c => c.Replicas).Count(r => r.Bad);

    private static ulong LengthOf(FileRecord file) => file.Chunks.Aggregate(0UL, (sum, c) => sum + c.Length);

    private FileInfo ToFileInfo(FileRecord file)
    {
        var info = new FileInfo
        {
            Path = file.Path,
            Replicas = file.Replicas,
            Epoch = file.Epoch,
            CreatedUnixMs = file.CreatedUnixMs,
            ModifiedUnixMs = file.ModifiedUnixMs,
        };
        ulong offset = 0;
        foreach (var chunk in file.Chunks)
        {
            info.Chunks.Add(ToChunkLocation(chunk, offset));
            offset += chunk.Length;
        }
        info.Length = offset;
        return info;
    }

    private ChunkLocation ToChunkLocation(ChunkRecord chunk, ulong fileOffset)
    {
        var location = new ChunkLocation
        {
            ChunkId = chunk.ChunkId,
            Length = chunk.Length,
            Sealed = chunk.Sealed,
            PlacementDegraded = chunk.PlacementDegraded,
            FileOffset = fileOffset,
            MaxLength = chunk.MaxLength,
        };
        foreach (var replica in chunk.Replicas)
        {
            var server = _servers[replica.ChunkServerId];
            location.Replicas.Add(new ReplicaLocation
            {
                ChunkServerId = server.Id,
                Node = server.Node,
                Rack = server.Rack,
                Address = server.Address,
                Bad = replica.Bad,
            });
        }
        return location;
    }

    private static VolumeInfo ToVolumeInfo(VolumeRecord volume)
    {
        var info = new VolumeInfo
        {
            Name = volume.Name,
            SizeBytes = volume.SizeBytes,
            Replicas = volume.Replicas,
            Epoch = volume.Epoch,
            CreatedUnixMs = volume.CreatedUnixMs,
            Directory = NameRules.VolumeDirectory(volume.Name),
            LeaseHolder = volume.LeaseHolder,
        };
        info.Readers.AddRange(volume.Readers);
        foreach (var label in volume.Labels)
        {
            info.Labels[label.Key] = label.Value;
        }
        return info;
    }

    // ---------- snapshots ----------

    /// <summary>The whole state, every collection in ordinal order, so equal states give identical bytes.</summary>
    public MasterSnapshot ToSnapshot()
    {
        var snapshot = new MasterSnapshot { LastIndex = LastIndex, NextChunkId = NextChunkId };
        snapshot.ChunkServers.AddRange(_servers.Values.OrderBy(s => s.Id, StringComparer.Ordinal).Select(s => s.Clone()));
        snapshot.Files.AddRange(_paths.Select(p => _files[p].Clone()));
        snapshot.Volumes.AddRange(_volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal).Select(v => v.Clone()));
        snapshot.Nodes.AddRange(_nodes.Values.OrderBy(n => n.Id, StringComparer.Ordinal).Select(n => n.Clone()));
        foreach (var (serverId, chunks) in _pendingDeletions.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var record = new PendingDeletionRecord { ChunkServerId = serverId };
            record.ChunkIds.AddRange(chunks);
            snapshot.PendingDeletions.Add(record);
        }
        _sessions.WriteTo(snapshot);
        return snapshot;
    }

    public static MasterStateMachine FromSnapshot(MasterSnapshot snapshot)
    {
        var state = new MasterStateMachine { LastIndex = snapshot.LastIndex, NextChunkId = Math.Max(1, snapshot.NextChunkId) };
        foreach (var server in snapshot.ChunkServers)
        {
            state._servers[server.Id] = server.Clone();
            state._replicaCounts.TryAdd(server.Id, 0);
        }
        foreach (var source in snapshot.Files)
        {
            var file = source.Clone();
            state._files[file.Path] = file;
            state._paths.Add(file.Path);
            foreach (var chunk in file.Chunks)
            {
                state.IndexChunk(file, chunk);
            }
        }
        foreach (var volume in snapshot.Volumes)
        {
            state._volumes[volume.Name] = volume.Clone();
        }
        foreach (var node in snapshot.Nodes)
        {
            state._nodes[node.Id] = node.Clone();
        }
        foreach (var pending in snapshot.PendingDeletions)
        {
            state._pendingDeletions[pending.ChunkServerId] = new SortedSet<ulong>(pending.ChunkIds);
        }
        state._sessions = ClientSessions.From(snapshot);
        return state;
    }
}
