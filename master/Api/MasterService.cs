using FeitianK8s.Core.Common;
using FeitianK8s.Master.Cluster;
using FeitianK8s.Master.Rebuild;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;
using FileInfo = FeitianK8s.Proto.Master.FileInfo;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Api;

/// <summary>
/// The Master gRPC service: parses requests into commands or queries, runs them, and maps
/// <see cref="MasterError"/> to a status with a reason trailer. No metadata logic here.
/// </summary>
public sealed class MasterService(
    MasterMetadata metadata,
    ChunkServerLiveness liveness,
    ChunkAllocator allocator,
    MasterOptions options,
    MasterIdentity identity,
    DeadServerDetector dead,
    ChunkServerReports reports,
    Web.ClusterQueries queries,
    NodeLeases nodeLeases,
    ILogger<MasterService> logger) : Proto.Master.Master.MasterBase
{
    public const uint HeartbeatIntervalMs = 1000;
    private const int MaxDeletesPerHeartbeat = 1024;

    // ---------- chunk servers ----------

    public override async Task<RegisterChunkServerResponse> RegisterChunkServer(RegisterChunkServerRequest request, ServerCallContext context)
    {
        var identityOfServer = request.Identity ?? throw Invalid("identity is missing");
        var server = new ChunkServerRecord
        {
            Id = identityOfServer.Id,
            Node = identityOfServer.Node,
            Rack = identityOfServer.Rack,
            Address = identityOfServer.Address,
        };
        await Submit(new MasterCommand { RegisterChunkServer = new RegisterChunkServerCommand { Server = server } }, context);
        liveness.Record(server.Id, request.CapacityBytes, request.UsedBytes, (ulong)request.Chunks.Count);
        var response = new RegisterChunkServerResponse { HeartbeatIntervalMs = HeartbeatIntervalMs };
        response.OrphanChunks.AddRange(Query(state => request.Chunks
            .Select(c => c.ChunkId)
            .Where(id => !state.IsChunkReferenced(id) && id < state.NextChunkId)
            .Distinct()
            .Order()
            .ToList()));
        logger.LogInformation("Chunk server {Id} registered: node {Node}, rack {Rack}, address {Address}, {Chunks} chunks, {Orphans} orphans",
            server.Id, server.Node, server.Rack, server.Address, request.Chunks.Count, response.OrphanChunks.Count);
        // Replicas the master records here that the server no longer has intact (missing, or stale after a seal it missed).
        foreach (var (chunkId, reason) in Query(state => ReplicaReconciler.BadOnRegistration(state, server.Id, request.Chunks)))
        {
            await MarkBadAsync(chunkId, server.Id, reason, context);
        }
        // A new id on an address another server held: that server lost its data directory (or was replaced) and is gone.
        // (One port serves one process: the old id cannot be running there too. Should it heartbeat again, it is alive again.)
        foreach (var replaced in Query(state => state.ChunkServers.Where(s => s.Address == server.Address && s.Id != server.Id).Select(s => s.Id).ToList()))
        {
            dead.Supersede(replaced);
            // Its last heartbeat is still fresh: without this, an allocation could name the old id and reach the new process.
            liveness.Forget(replaced);
            logger.LogWarning("Chunk server {New} registered on {Address}, the address of chunk server {Old}: the old one is dead, its replicas are rebuilt",
                server.Id, server.Address, replaced);
        }
        return response;
    }

    public override async Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        CheckOrThrow(NameRules.CheckId("chunk server id", request.Id));
        var known = Query(state => state.FindChunkServer(request.Id)?.Clone());
        if (known is null)
        {
            return new HeartbeatResponse { Known = false };
        }
        liveness.Record(request.Id, request.CapacityBytes, request.UsedBytes, request.ChunkCount);
        reports.Record(request.Id, request.Scrub, request.RebuildShare);
        if (request.LostChunks.Count > 0)
        {
            foreach (var chunkId in Query(state => ReplicaReconciler.LostReplicas(state, request.Id, request.LostChunks)))
            {
                await MarkBadAsync(chunkId, request.Id, "lost by the chunk server (data directory gone or unreadable)", context);
            }
        }
        var changed = new ChunkServerRecord
        {
            Id = known.Id,
            Node = request.Node.Length > 0 ? request.Node : known.Node,
            Rack = request.Node.Length > 0 ? request.Rack : known.Rack,
            Address = request.Address.Length > 0 ? request.Address : known.Address,
        };
        if (!changed.Equals(known))
        {
            await Submit(new MasterCommand { RegisterChunkServer = new RegisterChunkServerCommand { Server = changed } }, context);
        }
        if (request.DeletedChunks.Count > 0)
        {
            var ack = new AckDeletedChunksCommand { ChunkServerId = request.Id };
            ack.ChunkIds.AddRange(request.DeletedChunks);
            await Submit(new MasterCommand { AckDeletedChunks = ack }, context);
        }
        var response = new HeartbeatResponse { Known = true };
        response.DeleteChunks.AddRange(Query(state => state.PendingDeletions(request.Id, MaxDeletesPerHeartbeat)));
        return response;
    }

    public override async Task<ReportBadReplicaResponse> ReportBadReplica(ReportBadReplicaRequest request, ServerCallContext context)
    {
        CheckOrThrow(NameRules.CheckId("chunk server id", request.ChunkServerId));
        await Submit(new MasterCommand
        {
            ReportBadReplica = new ReportBadReplicaCommand { ChunkId = request.ChunkId, ChunkServerId = request.ChunkServerId },
        }, context);
        logger.LogWarning("Replica of chunk {ChunkId} on {ChunkServer} reported bad: {Reason}", request.ChunkId, request.ChunkServerId, request.Reason);
        return new ReportBadReplicaResponse();
    }

    private async Task MarkBadAsync(ulong chunkId, string chunkServerId, string reason, ServerCallContext context)
    {
        var result = await metadata.SubmitAsync(new MasterCommand
        {
            ReportBadReplica = new ReportBadReplicaCommand { ChunkId = chunkId, ChunkServerId = chunkServerId },
        }, context.CancellationToken);
        if (result.IsOk)
        {
            logger.LogWarning("Replica of chunk {ChunkId} on {ChunkServer} marked bad: {Reason}", chunkId, chunkServerId, reason);
        }
    }

    // ---------- cluster ----------

    public override Task<ClusterStatus> GetClusterStatus(GetClusterStatusRequest request, ServerCallContext context)
    {
        var status = Query(queries.Status);
        status.Masters.Add(OwnState());
        return Task.FromResult(status);
    }

    /// <summary>Answered by every master, leader or not: its own Raft state.</summary>
    public override Task<MasterStatus> GetMasterState(GetMasterStateRequest request, ServerCallContext context) =>
        Task.FromResult(OwnState());

    private MasterStatus OwnState()
    {
        var raft = metadata.State();
        return new MasterStatus
        {
            Address = identity.GrpcAddress,
            Role = raft.Role,
            Term = raft.Term,
            CommitIndex = raft.CommitIndex,
            AppliedIndex = raft.AppliedIndex,
            RaftEndpoint = raft.RaftEndpoint,
            LeaderAddress = raft.LeaderAddress ?? "",
        };
    }

    // ---------- namespace ----------

    public override async Task<FileInfo> CreateFile(CreateFileRequest request, ServerCallContext context) =>
        (FileInfo)(await Submit(new MasterCommand
        {
            CreateFile = new CreateFileCommand
            {
                Path = request.Path,
                Replicas = request.Replicas == 0 ? (uint)options.DefaultReplicas : request.Replicas,
                Guard = ToGuard(request.Guard),
            },
        }, context))!;

    public override Task<FileInfo> StatFile(StatFileRequest request, ServerCallContext context) =>
        Task.FromResult(Query(state => state.StatFile(request.Path)));

    public override Task<ListFilesResponse> ListFiles(ListFilesRequest request, ServerCallContext context)
    {
        var response = new ListFilesResponse();
        response.Entries.AddRange(Query(state => state.List(request.Path, request.Recursive)));
        return Task.FromResult(response);
    }

    public override async Task<RenameFileResponse> RenameFile(RenameFileRequest request, ServerCallContext context)
    {
        await Submit(new MasterCommand { RenameFile = new RenameFileCommand { From = request.From, To = request.To } }, context);
        return new RenameFileResponse();
    }

    public override async Task<DeleteFileResponse> DeleteFile(DeleteFileRequest request, ServerCallContext context)
    {
        await Submit(new MasterCommand { DeleteFile = new DeleteFileCommand { Path = request.Path, Guard = ToGuard(request.Guard) } }, context);
        return new DeleteFileResponse();
    }

    public override async Task<OpenForAppendResponse> OpenForAppend(OpenForAppendRequest request, ServerCallContext context)
    {
        var file = (FileInfo)(await Submit(new MasterCommand
        {
            OpenForAppend = new OpenForAppendCommand { Path = request.Path, Guard = ToGuard(request.Guard), ClientNode = request.ClientNode },
        }, context))!;
        return new OpenForAppendResponse { Epoch = file.Epoch, File = file };
    }

    public override async Task<ChunkLocation> AllocateChunk(AllocateChunkRequest request, ServerCallContext context)
    {
        // A retry of an allocation applied already (answer lost in a leader change): the chunk it got, without planning a new one.
        if (RequestIds.Of(context.RequestHeaders) is { } id && Query(state => state.AnswerOf(id.ClientId, id.Seq)) is { Value: ChunkLocation allocated })
        {
            return allocated;
        }
        var command = Run(() => allocator.Plan(request.Path, request.Epoch, request.PreferredNode, request.ExcludeChunkServers));
        return (ChunkLocation)(await Submit(new MasterCommand { AllocateChunk = command }, context))!;
    }

    public override async Task<CommitChunkResponse> CommitChunk(CommitChunkRequest request, ServerCallContext context)
    {
        await Submit(new MasterCommand
        {
            CommitChunk = new CommitChunkCommand
            {
                Path = request.Path,
                Epoch = request.Epoch,
                ChunkId = request.ChunkId,
                Length = request.Length,
                Sealed = request.Sealed,
            },
        }, context);
        return new CommitChunkResponse();
    }

    // ---------- volumes ----------

    public override async Task<VolumeInfo> CreateVolume(CreateVolumeRequest request, ServerCallContext context)
    {
        var command = new CreateVolumeCommand
        {
            Name = request.Name,
            SizeBytes = request.SizeBytes,
            Replicas = request.Replicas == 0 ? (uint)options.DefaultReplicas : request.Replicas,
        };
        command.Labels.AddRange(request.Labels.Select(l => new Label { Key = l.Key, Value = l.Value }));
        return (VolumeInfo)(await Submit(new MasterCommand { CreateVolume = command }, context))!;
    }

    public override Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        var response = new ListVolumesResponse();
        response.Volumes.AddRange(Query(queries.VolumesWithHealth));
        return Task.FromResult(response);
    }

    public override async Task<NodeInfo> RegisterNode(RegisterNodeRequest request, ServerCallContext context)
    {
        if (request.LeaseSeconds != 0)
        {
            CheckOrThrow(NodeLeaseRules.Check(request.LeaseSeconds));
        }
        var node = (NodeInfo)(await Submit(new MasterCommand
        {
            RegisterNode = new RegisterNodeCommand { Node = new NodeRecord { Id = request.Id, Rack = request.Rack, LeaseSeconds = request.LeaseSeconds } },
        }, context))!;
        logger.LogInformation("Node {Node} registered (rack {Rack}, node lease {Lease} s)", node.Id, node.Rack, request.LeaseSeconds);
        return WithLease(node);
    }

    public override Task<NodeInfo> GetNode(GetNodeRequest request, ServerCallContext context) =>
        Task.FromResult(WithLease(Query(state => state.FindNode(request.Id) ?? throw new MasterException(MasterError.NotFound($"node '{request.Id}' is not known to the cluster")))));

    /// <summary>Renews the node's lease; registers the node first when it is unknown or its lease length or rack changed.</summary>
    public override async Task<NodeLeaseStatus> RenewNodeLease(RenewNodeLeaseRequest request, ServerCallContext context)
    {
        CheckOrThrow(NameRules.CheckId("node id", request.Id));
        CheckOrThrow(NodeLeaseRules.Check(request.LeaseSeconds));
        var record = Query(state => state.FindRegisteredNode(request.Id)?.Clone());
        var rack = request.Rack.Length > 0 ? request.Rack : record?.Rack ?? "";
        if (record is null || record.LeaseSeconds != request.LeaseSeconds || record.Rack != rack)
        {
            record = new NodeRecord { Id = request.Id, Rack = rack, LeaseSeconds = request.LeaseSeconds };
            await Submit(new MasterCommand { RegisterNode = new RegisterNodeCommand { Node = record } }, context);
            logger.LogInformation("Node {Node} registered by its lease renewal (rack {Rack}, node lease {Lease} s)", record.Id, record.Rack, record.LeaseSeconds);
        }
        var before = nodeLeases.Judge(record);
        nodeLeases.Renew(request.Id);
        if (before.State == NodeLeases.Expired)
        {
            logger.LogWarning("Node {Node} renewed its lease after it had expired", request.Id);
        }
        return nodeLeases.Judge(record);
    }

    public override Task<ListNodeLeasesResponse> ListNodeLeases(ListNodeLeasesRequest request, ServerCallContext context)
    {
        var response = new ListNodeLeasesResponse();
        response.Leases.AddRange(Query(state => state.RegisteredNodes.Select(nodeLeases.Judge).ToList()));
        return Task.FromResult(response);
    }

    /// <summary>The node with the leader's judgment of its lease (registered nodes only).</summary>
    private NodeInfo WithLease(NodeInfo node)
    {
        if (Query(state => state.FindRegisteredNode(node.Id)?.Clone()) is { } record)
        {
            node.Lease = nodeLeases.Judge(record);
        }
        return node;
    }

    public override Task<VolumeInfo> StatVolume(StatVolumeRequest request, ServerCallContext context) =>
        Task.FromResult(Query(state => state.StatVolume(request.Name)));

    public override async Task<VolumeInfo> ResizeVolume(ResizeVolumeRequest request, ServerCallContext context) =>
        (VolumeInfo)(await Submit(new MasterCommand
        {
            ResizeVolume = new ResizeVolumeCommand { Name = request.Name, SizeBytes = request.SizeBytes },
        }, context))!;

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        await Submit(new MasterCommand { DeleteVolume = new DeleteVolumeCommand { Name = request.Name } }, context);
        return new DeleteVolumeResponse();
    }

    public override async Task<VolumeLease> AcquireVolumeLease(AcquireVolumeLeaseRequest request, ServerCallContext context)
    {
        var volume = (VolumeInfo)(await Submit(new MasterCommand
        {
            AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = request.Name, Holder = request.Holder },
        }, context))!;
        logger.LogInformation("Volume {Volume} lease taken by {Holder} at epoch {Epoch}", volume.Name, request.Holder, volume.Epoch);
        return new VolumeLease { Name = volume.Name, Epoch = volume.Epoch, Volume = volume };
    }

    public override async Task<VolumeInfo> SetVolumeReader(SetVolumeReaderRequest request, ServerCallContext context)
    {
        var volume = (VolumeInfo)(await Submit(new MasterCommand
        {
            SetVolumeReader = new SetVolumeReaderCommand { Name = request.Name, Node = request.Node, Attached = request.Attached },
        }, context))!;
        logger.LogInformation("Volume {Volume}: reader {Node} {Change}", volume.Name, request.Node, request.Attached ? "attached" : "detached");
        return volume;
    }

    // ---------- mapping ----------

    private static Guard? ToGuard(VolumeGuard? guard) =>
        guard is null ? null : new Guard { Volume = guard.Volume, Epoch = guard.Epoch };

    private async Task<object?> Submit(MasterCommand command, ServerCallContext context)
    {
        // The request id names the call's first command only: handlers that log several (heartbeats) must not have the rest deduplicated against it.
        if (RequestIds.Of(context.RequestHeaders) is { } id && id.ClientId.Length <= ClientSessions.MaxClientIdLength
            && context.UserState.TryAdd(RequestIds.SeqHeader, true))
        {
            command.ClientId = id.ClientId;
            command.RequestSeq = id.Seq;
        }
        ApplyResult result;
        try
        {
            result = await metadata.SubmitAsync(command, context.CancellationToken);
        }
        catch (NotLeaderException error)
        {
            throw NotLeader(error);
        }
        catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
        {
            throw Unavailable(error);
        }
        if (result.Error is not null)
        {
            throw ToRpc(result.Error);
        }
        return result.Value;
    }

    private T Query<T>(Func<MasterStateMachine, T> query) => Run(() => metadata.Read(query));

    private static T Run<T>(Func<T> action)
    {
        try
        {
            return action();
        }
        catch (MasterException error)
        {
            throw ToRpc(error.Error);
        }
        catch (NotLeaderException error)
        {
            throw NotLeader(error);
        }
        catch (Exception error) when (error is MasterStoppedException or ObjectDisposedException)
        {
            throw Unavailable(error);
        }
    }

    private static void CheckOrThrow(MasterError? error)
    {
        if (error is not null)
        {
            throw ToRpc(error);
        }
    }

    private static RpcException Invalid(string message) => ToRpc(MasterError.Invalid(message));

    /// <summary>The follower contract: UNAVAILABLE, reason not-leader, and the leader's gRPC address when known.</summary>
    public static RpcException NotLeader(NotLeaderException error) => error.LeaderAddress is null
        ? FeitianStatus.Error(StatusCode.Unavailable, ErrorReasons.NotLeader, error.Message)
        : FeitianStatus.Error(StatusCode.Unavailable, ErrorReasons.NotLeader, error.Message, (FeitianStatus.LeaderTrailer, error.LeaderAddress));

    private static RpcException Unavailable(Exception error) =>
        new(new Status(StatusCode.Unavailable, $"master is not serving: {error.Message}"));

    public static RpcException ToRpc(MasterError error) => FeitianStatus.Error(error.Code switch
    {
        MasterErrorCode.NotFound => StatusCode.NotFound,
        MasterErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        MasterErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        MasterErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        MasterErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        MasterErrorCode.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    }, error.Reason, error.Message);
}
