using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.Csi;
using Grpc.Core;

namespace FeitianK8s.Csi.Node;

/// <summary>CSI Node, thin over <see cref="NodeStager"/>: validate, lock the volume (ABORTED when busy), act.</summary>
public sealed class NodeService(NodeStager stager, VolumeLocks locks, CsiDriverOptions options) : Proto.Csi.Node.NodeBase
{
    public override async Task<NodeStageVolumeResponse> NodeStageVolume(NodeStageVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodeStageVolume: volume id is missing");
        CsiErrors.Require(request.StagingTargetPath.Length > 0, $"NodeStageVolume '{request.VolumeId}': staging target path is missing");
        CsiErrors.Require(request.VolumeCapability is not null, $"NodeStageVolume '{request.VolumeId}': volume capability is missing");
        var capability = request.VolumeCapability!;
        CapabilityRules.RequireValid([capability], request.VolumeId);
        if (CapabilityRules.Check(capability) is { } problem)
        {
            throw CsiErrors.InvalidArgument($"NodeStageVolume '{request.VolumeId}': {problem}");
        }
        var block = capability.Block is not null;
        var fsType = block ? "" : FsTypeOf(capability, request.VolumeContext);
        var readOnly = CapabilityRules.IsReadOnlyMode(capability.AccessMode.Mode) || request.PublishContext.GetValueOrDefault("writable") == "false";
        using var _ = locks.Acquire(request.VolumeId, "NodeStageVolume");
        await stager.StageAsync(new StageRequest(request.VolumeId, request.StagingTargetPath, block, fsType,
            block ? [] : capability.Mount.MountFlags.ToList(), readOnly), context.CancellationToken);
        return new NodeStageVolumeResponse();
    }

    public override async Task<NodeUnstageVolumeResponse> NodeUnstageVolume(NodeUnstageVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodeUnstageVolume: volume id is missing");
        CsiErrors.Require(request.StagingTargetPath.Length > 0, $"NodeUnstageVolume '{request.VolumeId}': staging target path is missing");
        using var _ = locks.Acquire(request.VolumeId, "NodeUnstageVolume");
        await stager.UnstageAsync(request.VolumeId, request.StagingTargetPath, context.CancellationToken);
        return new NodeUnstageVolumeResponse();
    }

    public override async Task<NodePublishVolumeResponse> NodePublishVolume(NodePublishVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodePublishVolume: volume id is missing");
        CsiErrors.Require(request.StagingTargetPath.Length > 0, $"NodePublishVolume '{request.VolumeId}': staging target path is missing");
        CsiErrors.Require(request.TargetPath.Length > 0, $"NodePublishVolume '{request.VolumeId}': target path is missing");
        CsiErrors.Require(request.VolumeCapability is not null, $"NodePublishVolume '{request.VolumeId}': volume capability is missing");
        CapabilityRules.RequireValid([request.VolumeCapability!], request.VolumeId);
        if (CapabilityRules.Check(request.VolumeCapability!) is { } problem)
        {
            throw CsiErrors.InvalidArgument($"NodePublishVolume '{request.VolumeId}': {problem}");
        }
        var readOnly = request.Readonly || CapabilityRules.IsReadOnlyMode(request.VolumeCapability!.AccessMode.Mode);
        using var _ = locks.Acquire(request.VolumeId, "NodePublishVolume");
        await stager.PublishAsync(request.VolumeId, request.StagingTargetPath, request.TargetPath, request.VolumeCapability!.Block is not null, readOnly,
            context.CancellationToken);
        return new NodePublishVolumeResponse();
    }

    public override async Task<NodeUnpublishVolumeResponse> NodeUnpublishVolume(NodeUnpublishVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodeUnpublishVolume: volume id is missing");
        CsiErrors.Require(request.TargetPath.Length > 0, $"NodeUnpublishVolume '{request.VolumeId}': target path is missing");
        using var _ = locks.Acquire(request.VolumeId, "NodeUnpublishVolume");
        await stager.UnpublishAsync(request.VolumeId, request.TargetPath, context.CancellationToken);
        return new NodeUnpublishVolumeResponse();
    }

    public override async Task<NodeGetVolumeStatsResponse> NodeGetVolumeStats(NodeGetVolumeStatsRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodeGetVolumeStats: volume id is missing");
        CsiErrors.Require(request.VolumePath.Length > 0, $"NodeGetVolumeStats '{request.VolumeId}': volume path is missing");
        var (usage, blockBytes, problem) = await stager.StatsAsync(request.VolumeId, request.VolumePath, context.CancellationToken);
        var response = new NodeGetVolumeStatsResponse
        {
            VolumeCondition = new VolumeCondition { Abnormal = problem is not null, Message = problem ?? "healthy" },
        };
        if (usage is null)
        {
            response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = blockBytes });
        }
        else
        {
            response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = usage.TotalBytes, Available = usage.AvailableBytes, Used = usage.UsedBytes });
            response.Usage.Add(new VolumeUsage
            {
                Unit = VolumeUsage.Types.Unit.Inodes, Total = usage.TotalInodes, Available = usage.FreeInodes, Used = usage.TotalInodes - usage.FreeInodes,
            });
        }
        return response;
    }

    public override async Task<NodeExpandVolumeResponse> NodeExpandVolume(NodeExpandVolumeRequest request, ServerCallContext context)
    {
        CsiErrors.Require(request.VolumeId.Length > 0, "NodeExpandVolume: volume id is missing");
        CsiErrors.Require(request.VolumePath.Length > 0, $"NodeExpandVolume '{request.VolumeId}': volume path is missing");
        if (request.CapacityRange is { } range && range.LimitBytes > 0 && range.RequiredBytes > range.LimitBytes)
        {
            throw CsiErrors.OutOfRange($"NodeExpandVolume '{request.VolumeId}': required bytes {range.RequiredBytes} exceed limit {range.LimitBytes}");
        }
        using var _ = locks.Acquire(request.VolumeId, "NodeExpandVolume");
        var size = await stager.ExpandAsync(request.VolumeId, request.VolumePath, context.CancellationToken);
        if (request.CapacityRange is { RequiredBytes: > 0 } required && size < required.RequiredBytes)
        {
            throw CsiErrors.OutOfRange($"NodeExpandVolume '{request.VolumeId}': the volume has {size} bytes, less than the required {required.RequiredBytes}; expand it on the controller first");
        }
        return new NodeExpandVolumeResponse { CapacityBytes = size };
    }

    public override Task<NodeGetCapabilitiesResponse> NodeGetCapabilities(NodeGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new NodeGetCapabilitiesResponse();
        response.Capabilities.AddRange(FeitianCsiCapabilities.Node.Select(t => new NodeServiceCapability { Rpc = new NodeServiceCapability.Types.RPC { Type = t } }));
        return Task.FromResult(response);
    }

    public override Task<NodeGetInfoResponse> NodeGetInfo(NodeGetInfoRequest request, ServerCallContext context)
    {
        // No accessible topology: the plugin advertises no VOLUME_ACCESSIBILITY_CONSTRAINTS, since
        // any node reaches the cluster over the network (a per-node segment would pin PVs to nodes).
        return Task.FromResult(new NodeGetInfoResponse { NodeId = options.NodeId, MaxVolumesPerNode = options.MaxVolumesPerNode });
    }

    private static string FsTypeOf(VolumeCapability capability, IDictionary<string, string> context)
    {
        var fsType = capability.Mount.FsType;
        if (fsType.Length == 0)
        {
            fsType = context.TryGetValue("fsType", out var fromContext) ? fromContext : "ext4";
        }
        CsiErrors.Require(CapabilityRules.FileSystems.Contains(fsType), $"fs type '{fsType}' is not supported (ext4, xfs)");
        return fsType;
    }
}
