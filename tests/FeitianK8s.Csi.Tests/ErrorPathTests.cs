using System.Net.Sockets;
using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.Csi;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Tests;

/// <summary>Every error the spec names, each asserted on the wire, and proof that a refused call changed nothing.</summary>
[Collection(CsiCollection.Name)]
public sealed class ErrorPathTests : IDisposable
{
    private readonly CsiFixture _f;

    public ErrorPathTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private CsiClient C => _f.Client;

    [Fact]
    public async Task CreateVolume_rejects_bad_requests_and_reuse_of_a_name_with_other_parameters()
    {
        var cap = Csi.Mount();
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(Csi.Create("", Csi.MiB, cap)));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () =>
            await C.Controller.CreateVolumeAsync(new CreateVolumeRequest { Name = "pvc-nocap", CapacityRange = new CapacityRange { RequiredBytes = Csi.MiB } }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-mmw", Csi.MiB, Csi.Mount(Mode.MultiNodeMultiWriter))));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-btrfs", Csi.MiB, Csi.Mount(fsType: "btrfs"))));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-nomode", Csi.MiB, new VolumeCapability
        {
            Mount = new VolumeCapability.Types.MountVolume(),
        })));
        await Csi.AssertCode(StatusCode.OutOfRange, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-range", 2 * Csi.MiB, cap, limit: Csi.MiB)));
        await Csi.AssertCode(StatusCode.OutOfRange, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-tiny", 1, cap, limit: 100)));
        await Csi.AssertCode(StatusCode.OutOfRange, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-neg", -5, cap)));
        var badParameter = Csi.Create("pvc-param", Csi.MiB, cap);
        badParameter.Parameters["replicas"] = "many";
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(badParameter));
        var unknownParameter = Csi.Create("pvc-param", Csi.MiB, cap);
        unknownParameter.Parameters["colour"] = "blue";
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(unknownParameter));
        var clone = Csi.Create("pvc-clone", Csi.MiB, cap);
        clone.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = "pvc-x" } };
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.CreateVolumeAsync(clone));
        clone.VolumeContentSource = new VolumeContentSource();
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.CreateVolumeAsync(clone));
        // None of the refused requests created anything.
        var listed = await C.Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.DoesNotContain(listed.Entries, e => e.Volume.VolumeId is "pvc-nocap" or "pvc-mmw" or "pvc-btrfs" or "pvc-range" or "pvc-tiny" or "pvc-param" or "pvc-clone");

        var request = Csi.Create("pvc-reuse", 8 * Csi.MiB, cap);
        request.Parameters["replicas"] = "2";
        request.Parameters["rackSpread"] = "true";
        request.Parameters["fsType"] = "ext4";
        var first = await C.Controller.CreateVolumeAsync(request);
        Assert.Equal("2", first.Volume.VolumeContext["replicas"]);
        Assert.Equal((await C.Controller.CreateVolumeAsync(request)).Volume, first.Volume);
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-reuse", 16 * Csi.MiB, cap)));
        var otherReplicas = request.Clone();
        otherReplicas.Parameters["replicas"] = "3";
        await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Controller.CreateVolumeAsync(otherReplicas));
        // A range the existing volume satisfies is compatible.
        var wider = request.Clone();
        wider.CapacityRange = new CapacityRange { RequiredBytes = 4 * Csi.MiB, LimitBytes = 8 * Csi.MiB };
        Assert.Equal(8 * Csi.MiB, (await C.Controller.CreateVolumeAsync(wider)).Volume.CapacityBytes);
        var get = await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "pvc-reuse" });
        Assert.Equal(8 * Csi.MiB, get.Volume.CapacityBytes);

        // Accessibility requirements from a CO that sends them anyway are accepted, and the volume
        // still carries no accessible topology (any node reaches the cluster).
        var topo = Csi.Create("pvc-topo", Csi.MiB, cap);
        topo.AccessibilityRequirements = new TopologyRequirement();
        topo.AccessibilityRequirements.Requisite.Add(new Topology { Segments = { ["topology.kubernetes.io/zone"] = "zone-2" } });
        topo.AccessibilityRequirements.Preferred.Add(new Topology { Segments = { ["topology.kubernetes.io/zone"] = "zone-2" } });
        var topoVolume = await C.Controller.CreateVolumeAsync(topo);
        Assert.Empty(topoVolume.Volume.AccessibleTopology);
        // Without a size the default is 1 GiB, with only a limit the largest 4 KiB multiple below it.
        Assert.Equal(1L << 30, (await C.Controller.CreateVolumeAsync(Csi.Create("pvc-default", 0, cap))).Volume.CapacityBytes);
        Assert.Equal(8 * Csi.MiB, (await C.Controller.CreateVolumeAsync(Csi.Create("pvc-limit", 0, cap, limit: 8 * Csi.MiB + 100))).Volume.CapacityBytes);

        foreach (var id in new[] { "pvc-reuse", "pvc-topo", "pvc-default", "pvc-limit" })
        {
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }

    [Fact]
    public async Task Controller_calls_on_missing_volumes_and_arguments()
    {
        var cap = Csi.Mount();
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest()));
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-never-created" });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = "pvc-never-created", NodeId = CsiFixture.NodeA, VolumeCapability = cap,
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = "pvc-x", VolumeCapability = cap,
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = "pvc-x", NodeId = CsiFixture.NodeA,
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest()));
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = "pvc-never-created", NodeId = CsiFixture.NodeA });
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest
        {
            VolumeId = "pvc-never-created", VolumeCapabilities = { cap },
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = "pvc-x" }));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = "pvc-never-created", CapacityRange = new CapacityRange { RequiredBytes = Csi.MiB },
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = "pvc-x" }));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "pvc-never-created" }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest()));

        var id = (await C.Controller.CreateVolumeAsync(Csi.Create("pvc-validate", 8 * Csi.MiB, cap))).Volume.VolumeId;
        var ok = await C.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = id, VolumeCapabilities = { cap, Csi.Block(Mode.MultiNodeReaderOnly) } });
        Assert.NotNull(ok.Confirmed);
        var refused = await C.Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = id, VolumeCapabilities = { Csi.Mount(Mode.MultiNodeMultiWriter) } });
        Assert.Null(refused.Confirmed);
        Assert.Contains("MultiNodeMultiWriter", refused.Message, StringComparison.Ordinal);
        await Csi.AssertCode(StatusCode.OutOfRange, async () => await C.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = id, CapacityRange = new CapacityRange { RequiredBytes = 32 * Csi.MiB, LimitBytes = 16 * Csi.MiB },
        }));
        // Shrinking is not possible: a smaller limit than the current size is out of range, and the size is unchanged.
        await Csi.AssertCode(StatusCode.OutOfRange, async () => await C.Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
        {
            VolumeId = id, CapacityRange = new CapacityRange { RequiredBytes = 4 * Csi.MiB, LimitBytes = 4 * Csi.MiB },
        }));
        Assert.Equal(8 * Csi.MiB, (await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id })).Volume.CapacityBytes);
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    [Fact]
    public async Task Writable_publish_to_a_second_node_fails_and_a_published_volume_is_not_deleted()
    {
        var cap = Csi.Mount();
        var id = (await C.Controller.CreateVolumeAsync(Csi.Create("pvc-twonodes", 8 * Csi.MiB, cap))).Volume.VolumeId;
        // A node no node plugin registered is NOT_FOUND, and the volume stays unpublished.
        await Csi.AssertCode(StatusCode.NotFound, async () =>
            await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = "some-fake-node-id", VolumeCapability = cap }));
        await Csi.AssertCode(StatusCode.NotFound, async () => await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest
        {
            VolumeId = id, NodeId = "some-fake-node-id", VolumeCapability = cap, Readonly = true,
        }));
        Assert.Empty((await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id })).Status.PublishedNodeIds);
        foreach (var node in new[] { "node-1", "node-2" })
        {
            await _f.Master.RegisterNodeAsync(new FeitianK8s.Proto.Master.RegisterNodeRequest { Id = node, Rack = "rack-1" });
        }
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = "node-1", VolumeCapability = cap });
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () =>
            await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = "node-2", VolumeCapability = cap }));
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id }));
        var status = await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id });
        Assert.Equal(["node-1"], status.Status.PublishedNodeIds);
        // A read-only publish to another node takes no lease and is allowed; the node is reported as published.
        for (var i = 0; i < 2; i++)
        {
            await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = "node-2", VolumeCapability = cap, Readonly = true });
        }
        Assert.Equal(["node-1", "node-2"], (await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id })).Status.PublishedNodeIds);
        // Unpublishing the reader leaves the writer's lease alone.
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = "node-2" });
        // Unpublishing from a node that holds nothing changes nothing.
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = "node-3" });
        Assert.Equal(["node-1"], (await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id })).Status.PublishedNodeIds);

        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = "node-1" });
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = "node-2", VolumeCapability = cap });
        Assert.Equal(["node-2"], (await C.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = id })).Status.PublishedNodeIds);
        await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = "node-2" });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
    }

    [Fact]
    public async Task ListVolumes_pages_with_tokens()
    {
        var cap = Csi.Mount();
        string[] ids = ["pvc-list-a", "pvc-list-b", "pvc-list-c"];
        foreach (var id in ids)
        {
            await C.Controller.CreateVolumeAsync(Csi.Create(id, Csi.MiB, cap));
        }
        var seen = new List<string>();
        var token = "";
        var pages = 0;
        do
        {
            var page = await C.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = 2, StartingToken = token });
            Assert.True(page.Entries.Count <= 2);
            seen.AddRange(page.Entries.Select(e => e.Volume.VolumeId));
            token = page.NextToken;
            pages++;
        }
        while (token.Length > 0);
        Assert.True(pages >= 2);
        Assert.Equal(seen.Distinct().Count(), seen.Count);
        // Paging lost nothing and invented nothing: exactly the created volumes, each once.
        Assert.Equal(ids.ToHashSet(), seen.ToHashSet());
        await Csi.AssertCode(StatusCode.Aborted, async () => await C.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = "garbage" }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = -1 }));
        foreach (var id in ids)
        {
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }

    [Fact]
    public async Task Node_calls_on_missing_volumes_and_arguments()
    {
        var cap = Csi.Mount();
        var staging = _f.Root.Combine("kubelet", "err", "staging");
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { StagingTargetPath = staging, VolumeCapability = cap }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = "pvc-x", VolumeCapability = cap }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = "pvc-x", StagingTargetPath = staging }));
        await Csi.AssertCode(StatusCode.NotFound, async () =>
            await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = "pvc-never-created", StagingTargetPath = staging, VolumeCapability = cap }));
        Assert.False(NodeCleanup.IsMounted(staging));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = "pvc-x" }));
        await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = "pvc-never-created", StagingTargetPath = staging });
        await Csi.AssertCode(StatusCode.FailedPrecondition, async () => await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = "pvc-never-created", StagingTargetPath = staging, TargetPath = _f.Root.Combine("kubelet", "err", "target"), VolumeCapability = cap,
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
        {
            VolumeId = "pvc-x", StagingTargetPath = staging, VolumeCapability = cap,
        }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = "pvc-x" }));
        await C.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = "pvc-never-created", TargetPath = _f.Root.Combine("kubelet", "err", "nothing") });
        await Csi.AssertCode(StatusCode.NotFound, async () =>
            await C.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "pvc-never-created", VolumePath = staging }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = "pvc-x" }));
        await Csi.AssertCode(StatusCode.NotFound, async () =>
            await C.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = "pvc-never-created", VolumePath = staging }));
        await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest { VolumeId = "pvc-x" }));
    }

    [Fact]
    public async Task Stage_with_incompatible_parameters_is_already_exists_and_a_wrong_path_is_not_found()
    {
        var cap = Csi.Mount();
        var staging = _f.Root.Combine("kubelet", "incompat", "staging");
        var id = (await C.Controller.CreateVolumeAsync(Csi.Create("pvc-incompat", 16 * Csi.MiB, cap))).Volume.VolumeId;
        await C.Controller.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA, VolumeCapability = cap });
        await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = cap });
        try
        {
            await Csi.AssertCode(StatusCode.AlreadyExists, async () =>
                await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = id, StagingTargetPath = staging, VolumeCapability = Csi.Block() }));
            await Csi.AssertCode(StatusCode.AlreadyExists, async () => await C.Node.NodeStageVolumeAsync(new NodeStageVolumeRequest
            {
                VolumeId = id, StagingTargetPath = _f.Root.Combine("kubelet", "incompat", "elsewhere"), VolumeCapability = cap,
            }));
            await Csi.AssertCode(StatusCode.InvalidArgument, async () => await C.Node.NodePublishVolumeAsync(new NodePublishVolumeRequest
            {
                VolumeId = id, StagingTargetPath = staging, TargetPath = _f.Root.Combine("kubelet", "incompat", "blk"), VolumeCapability = Csi.Block(),
            }));
            await Csi.AssertCode(StatusCode.NotFound, async () =>
                await C.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = "/not/a/path/of/this/volume" }));
            Assert.True(NodeCleanup.IsMounted(staging));
            var stats = await C.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = id, VolumePath = staging });
            Assert.False(stats.VolumeCondition.Abnormal);
        }
        finally
        {
            await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
            await C.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = id, NodeId = CsiFixture.NodeA });
            await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }

    [Fact]
    public async Task A_busy_volume_answers_aborted_while_other_volumes_proceed()
    {
        var locks = _f.Driver.Host.Services.GetRequiredService<VolumeLocks>();
        using (locks.Acquire("pvc-busy", "test holds the lock"))
        {
            await Csi.AssertCode(StatusCode.Aborted, async () => await C.Controller.CreateVolumeAsync(Csi.Create("pvc-busy", Csi.MiB, Csi.Mount())));
            await Csi.AssertCode(StatusCode.Aborted, async () => await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-busy" }));
            await Csi.AssertCode(StatusCode.Aborted, async () => await C.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest
            {
                VolumeId = "pvc-busy", StagingTargetPath = _f.Root.Combine("kubelet", "busy"),
            }));
            // Another volume is not blocked by this one.
            await C.Controller.CreateVolumeAsync(Csi.Create("pvc-notbusy", Csi.MiB, Csi.Mount()));
        }
        await C.Controller.CreateVolumeAsync(Csi.Create("pvc-busy", Csi.MiB, Csi.Mount()));
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-busy" });
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-notbusy" });
    }

    [Fact]
    public async Task Secrets_and_mount_flags_are_never_logged()
    {
        var request = Csi.Create("pvc-secret", Csi.MiB, Csi.Mount());
        request.Secrets["password"] = "hunter2-do-not-log";
        request.VolumeCapabilities[0].Mount.MountFlags.Add("user_xattr");
        await C.Controller.CreateVolumeAsync(request);
        await C.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "pvc-secret", Secrets = { ["token"] = "tok-do-not-log" } });
        var lines = _f.Logs.Lines;
        Assert.Contains(lines, l => l.Contains("pvc-secret", StringComparison.Ordinal) && l.Contains("***", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("hunter2-do-not-log", StringComparison.Ordinal) || l.Contains("tok-do-not-log", StringComparison.Ordinal)
            || l.Contains("user_xattr", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Random_bytes_on_the_socket_do_not_hurt_the_driver()
    {
        var random = Csi.Pattern(64 * 1024, seed: 9);
        for (var i = 0; i < 3; i++)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(_f.Driver.Host.Options.SocketPath));
            try
            {
                await socket.SendAsync(random.AsMemory(i * 1000));
            }
            catch (SocketException)
            {
                // The server may close the connection before reading everything.
            }
        }
        var info = await C.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
        Assert.Equal(CsiDriverOptions.DriverName, info.Name);
    }
}
