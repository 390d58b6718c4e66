using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.Csi;
using Grpc.Core;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// CSI Controller, thin over <see cref="VolumeManager"/>, <see cref="SnapshotManager"/> and
/// <see cref="CloneManager"/>: validate capabilities, then arguments, then take the volume's
/// (or snapshot's) lock (ABORTED when busy), then act.
/// </summary>
public sealed class ControllerService(VolumeManager volumes, SnapshotManager snapshots, CloneManager clones, VolumeLocks locks) : Proto.Csi.Controller.ControllerBase
{
    private const string TokenPrefix = "after:";

    public override async Task<CreateVolumeResponse> CreateVolume(CreateVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.Name.Length > 0, "CreateVolume: name is missing");
        CapabilityRules.RequireValid(request.VolumeCapabilities, request.Name);
        foreach (var capability in request.VolumeCapabilities)
        {
            if (CapabilityRules.Check(capability) is { } problem)
            {
                throw CsiErrors.InvalidArgument($"CreateVolume '{request.Name}': {problem}");
            }
        }
        var source = ContentSource(request);
        var parameters = VolumeParameters.Parse(request.Parameters);
        using var _ = locks.Acquire(request.Name, "CreateVolume");
        var required = request.CapacityRange?.RequiredBytes ?? 0;
        var limit = request.CapacityRange?.LimitBytes ?? 0;
        var volume = source is null
            ? await volumes.CreateAsync(request.Name, required, limit, parameters, context.CancellationToken)
            : await clones.CreateAsync(request.Name, required, limit, parameters, source, context.CancellationToken);
        // No accessible topology, whatever accessibility_requirements a CO sends (they are accepted
        // and ignored): every node reaches the cluster over the network, and racks are where the
        // master places replicas, not where a volume can be used. A PV without node affinity lets
        // its pod move to any node.
        return new CreateVolumeResponse { Volume = ToCsi(volume) };
    }

    /// <summary>The clone source a CreateVolume asks for; null without one. A source of no known type is INVALID_ARGUMENT.</summary>
    private static CloneSource? ContentSource(CreateVolumeRequest request) => request.VolumeContentSource?.TypeCase switch
    {
        null => null,
        VolumeContentSource.TypeOneofCase.Snapshot => new CloneSource(CloneSourceKind.Snapshot, request.VolumeContentSource.Snapshot.SnapshotId),
        VolumeContentSource.TypeOneofCase.Volume => new CloneSource(CloneSourceKind.Volume, request.VolumeContentSource.Volume.VolumeId),
        _ => throw CsiErrors.InvalidArgument($"CreateVolume '{request.Name}': the content source is neither a snapshot nor a volume"),
    };

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "DeleteVolume: volume id is missing");
        using var _ = locks.Acquire(request.VolumeId, "DeleteVolume");
        await volumes.DeleteAsync(request.VolumeId, context.CancellationToken);
        return new DeleteVolumeResponse();
    }

    public override async Task<ControllerPublishVolumeResponse> ControllerPublishVolume(ControllerPublishVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "ControllerPublishVolume: volume id is missing");
        CsiErrors.Require(request.NodeId.Length > 0, $"ControllerPublishVolume '{request.VolumeId}': node id is missing");
        CsiErrors.Require(request.VolumeCapability is not null, $"ControllerPublishVolume '{request.VolumeId}': volume capability is missing");
        CapabilityRules.RequireValid([request.VolumeCapability!], request.VolumeId);
        if (CapabilityRules.Check(request.VolumeCapability!) is { } problem)
        {
            throw CsiErrors.InvalidArgument($"ControllerPublishVolume '{request.VolumeId}': {problem}");
        }
        using var _ = locks.Acquire(request.VolumeId, "ControllerPublishVolume");
        var writable = !request.Readonly && !CapabilityRules.IsReadOnlyMode(request.VolumeCapability!.AccessMode.Mode);
        await volumes.PublishAsync(request.VolumeId, request.NodeId, writable, context.CancellationToken);
        var response = new ControllerPublishVolumeResponse();
        response.PublishContext.Add("writable", writable ? "true" : "false");
        return response;
    }

    public override async Task<ControllerUnpublishVolumeResponse> ControllerUnpublishVolume(ControllerUnpublishVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "ControllerUnpublishVolume: volume id is missing");
        using var _ = locks.Acquire(request.VolumeId, "ControllerUnpublishVolume");
        await volumes.UnpublishAsync(request.VolumeId, request.NodeId, context.CancellationToken);
        return new ControllerUnpublishVolumeResponse();
    }

    public override async Task<ValidateVolumeCapabilitiesResponse> ValidateVolumeCapabilities(ValidateVolumeCapabilitiesRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "ValidateVolumeCapabilities: volume id is missing");
        CapabilityRules.RequireValid(request.VolumeCapabilities, request.VolumeId);
        await volumes.RequireAsync(request.VolumeId, context.CancellationToken);
        var problems = request.VolumeCapabilities.Select(CapabilityRules.Check).OfType<string>().ToList();
        if (problems.Count > 0)
        {
            return new ValidateVolumeCapabilitiesResponse { Message = string.Join("; ", problems) };
        }
        var confirmed = new ValidateVolumeCapabilitiesResponse.Types.Confirmed();
        confirmed.VolumeCapabilities.AddRange(request.VolumeCapabilities);
        confirmed.VolumeContext.Add(request.VolumeContext);
        confirmed.Parameters.Add(request.Parameters);
        return new ValidateVolumeCapabilitiesResponse { Confirmed = confirmed };
    }

    /// <summary>Pages through volumes sorted by id; the token names the last id of the previous page.</summary>
    public override async Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.MaxEntries >= 0, $"ListVolumes: max_entries must not be negative (got {request.MaxEntries})");
        string? after = null;
        if (request.StartingToken.Length > 0)
        {
            if (!request.StartingToken.StartsWith(TokenPrefix, StringComparison.Ordinal))
            {
                throw CsiErrors.Aborted($"ListVolumes: starting token '{request.StartingToken}' was not issued by this plugin");
            }
            after = request.StartingToken[TokenPrefix.Length..];
        }
        var all = await volumes.ListAsync(context.CancellationToken);
        var rest = all.Where(v => after is null || string.CompareOrdinal(v.Id, after) > 0).ToList();
        var page = request.MaxEntries > 0 ? rest.Take(request.MaxEntries).ToList() : rest;
        var response = new ListVolumesResponse();
        foreach (var v in page)
        {
            var status = new ListVolumesResponse.Types.VolumeStatus();
            status.PublishedNodeIds.AddRange(v.PublishedNodes);
            response.Entries.Add(new ListVolumesResponse.Types.Entry { Volume = ToCsi(v), Status = status });
        }
        if (page.Count < rest.Count)
        {
            response.NextToken = TokenPrefix + page[^1].Id;
        }
        return response;
    }

    public override async Task<GetCapacityResponse> GetCapacity(GetCapacityRequest request, ServerCallContext context)
    {
        foreach (var capability in request.VolumeCapabilities)
        {
            if (CapabilityRules.Check(capability) is not null)
            {
                return new GetCapacityResponse { AvailableCapacity = 0 };
            }
        }
        var parameters = VolumeParameters.Parse(request.Parameters);
        var available = await volumes.AvailableCapacityAsync(parameters.Replicas, context.CancellationToken);
        return new GetCapacityResponse { AvailableCapacity = available, MinimumVolumeSize = VolumeManager.BlockSize };
    }

    public override Task<ControllerGetCapabilitiesResponse> ControllerGetCapabilities(ControllerGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new ControllerGetCapabilitiesResponse();
        response.Capabilities.AddRange(FeitianCsiCapabilities.Controller.Select(t => new ControllerServiceCapability
        {
            Rpc = new ControllerServiceCapability.Types.RPC { Type = t },
        }));
        return Task.FromResult(response);
    }

    public override async Task<ControllerExpandVolumeResponse> ControllerExpandVolume(ControllerExpandVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "ControllerExpandVolume: volume id is missing");
        CsiErrors.Require(request.CapacityRange is not null, $"ControllerExpandVolume '{request.VolumeId}': capacity range is missing");
        using var _ = locks.Acquire(request.VolumeId, "ControllerExpandVolume");
        var size = await volumes.ExpandAsync(request.VolumeId, request.CapacityRange!.RequiredBytes, request.CapacityRange.LimitBytes, context.CancellationToken);
        // Block volumes need the node too: the staged loop device must learn the new size.
        return new ControllerExpandVolumeResponse { CapacityBytes = size, NodeExpansionRequired = true };
    }

    public override async Task<ControllerGetVolumeResponse> ControllerGetVolume(ControllerGetVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "ControllerGetVolume: volume id is missing");
        var volume = await volumes.RequireAsync(request.VolumeId, context.CancellationToken);
        var status = new ControllerGetVolumeResponse.Types.VolumeStatus();
        status.PublishedNodeIds.AddRange(volume.PublishedNodes);
        return new ControllerGetVolumeResponse { Volume = ToCsi(volume), Status = status };
    }

    public override async Task<CreateSnapshotResponse> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context)
    {
        VolumeIds.RequireValidName(request.Name, "CreateSnapshot");
        CsiErrors.Require(request.SourceVolumeId.Length > 0, $"CreateSnapshot '{request.Name}': source volume id is missing");
        var parameters = SnapshotParameters.Parse(request.Parameters);
        using var _ = locks.Acquire(SnapshotLock(SnapshotIds.FromName(request.Name)), "CreateSnapshot");
        var snapshot = await snapshots.CreateAsync(request.Name, request.SourceVolumeId, parameters, context.CancellationToken);
        return new CreateSnapshotResponse { Snapshot = ToCsi(snapshot) };
    }

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.SnapshotId.Length > 0, "DeleteSnapshot: snapshot id is missing");
        using var _ = locks.Acquire(SnapshotLock(request.SnapshotId), "DeleteSnapshot");
        await snapshots.DeleteAsync(request.SnapshotId, context.CancellationToken);
        return new DeleteSnapshotResponse();
    }

    /// <summary>Pages through snapshots sorted by id, filtered by snapshot id and/or source volume; the token names the last id of the previous page.</summary>
    public override async Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.MaxEntries >= 0, $"ListSnapshots: max_entries must not be negative (got {request.MaxEntries})");
        string? after = null;
        if (request.StartingToken.Length > 0)
        {
            if (!request.StartingToken.StartsWith(TokenPrefix, StringComparison.Ordinal))
            {
                throw CsiErrors.Aborted($"ListSnapshots: starting token '{request.StartingToken}' was not issued by this plugin");
            }
            after = request.StartingToken[TokenPrefix.Length..];
        }
        var all = await snapshots.ListAsync(request.SnapshotId.Length > 0 ? request.SnapshotId : null,
            request.SourceVolumeId.Length > 0 ? request.SourceVolumeId : null, context.CancellationToken);
        var rest = all.Where(s => after is null || string.CompareOrdinal(s.Name, after) > 0).ToList();
        var page = request.MaxEntries > 0 ? rest.Take(request.MaxEntries).ToList() : rest;
        var response = new ListSnapshotsResponse();
        response.Entries.AddRange(page.Select(s => new ListSnapshotsResponse.Types.Entry { Snapshot = ToCsi(s) }));
        if (page.Count < rest.Count)
        {
            response.NextToken = TokenPrefix + page[^1].Name;
        }
        return response;
    }

    /// <summary>Snapshot ids share the lock table with volume ids under a prefix no volume id has.</summary>
    private static string SnapshotLock(string snapshotId) => "snapshot:" + snapshotId;

    private static Snapshot ToCsi(Core.Raf.SnapshotRecord s) => new()
    {
        SnapshotId = s.Name,
        SourceVolumeId = s.Volume,
        SizeBytes = s.SizeBytes,
        CreationTime = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(s.CreatedAt),
        ReadyToUse = s.ReadyToUse,
    };

    private static Volume ToCsi(ManagedVolume v)
    {
        var volume = new Volume { VolumeId = v.Id, CapacityBytes = v.SizeBytes };
        volume.VolumeContext.Add(v.Parameters.ToVolumeContext());
        volume.ContentSource = v.Source switch
        {
            { Kind: CloneSourceKind.Snapshot } s => new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = s.Id } },
            { Kind: CloneSourceKind.Volume } s => new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = s.Id } },
            _ => null,
        };
        return volume;
    }

}
