using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Proto.Csi;
using Grpc.Core;
using k8s;
using k8s.Models;
using MasterApi = FeitianK8s.Proto.Master;
using PluginService = FeitianK8s.Proto.Csi.PluginCapability.Types.Service.Types.Type;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// The operator's generated objects (StorageClass, controller Deployment, CSIDriver) driven through
/// EMULATIONS of the CSI sidecars (they need a real Kubernetes API server, which cannot run here;
/// see <see cref="ExternalProvisionerEmulation"/>, <see cref="ExternalAttacherEmulation"/>,
/// <see cref="SidecarStartupEmulation"/>) against the REAL driver on its socket, with a real local
/// master and chunk servers behind it.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class SidecarEmulationTests : IDisposable
{
    private readonly CsiFixture _f;

    public SidecarEmulationTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private static StorageCluster Cluster(Action<StorageCluster>? change = null)
    {
        var c = KubernetesJson.Deserialize<StorageCluster>("""
            {"apiVersion":"feitian.io/v1alpha1","kind":"StorageCluster",
             "metadata":{"name":"prod","namespace":"storage","uid":"uid-prod","generation":1 },
             "spec":{"chunkServers":{"nodeSelector":{"feitian.io/storage":"true"} } } }
            """);
        change?.Invoke(c);
        return c;
    }

    private static IReadOnlyList<DesiredObject> Desired(StorageCluster c, bool snapshotCrd = true) =>
        DesiredState.Build(c, new ClusterEnvironment([], snapshotCrd, CsiLeaseNamespace: "feitian-system"));

    private static T One<T>(IReadOnlyList<DesiredObject> desired) => desired.Select(d => d.Object).OfType<T>().Single();

    private Task<DriverInstance> StartControllerAsync(string name) =>
        _f.StartDriverAsync(name, _f.Root.Combine(name, "state"), mode: CsiMode.Controller);

    public static TheoryData<string> Classes => ["default", "every-documented-parameter"];

    /// <summary>The default class as the operator makes it, and one with every documented parameter set away from its default.</summary>
    private static V1StorageClass StorageClassFor(string which)
    {
        if (which == "default")
        {
            return One<V1StorageClass>(Desired(Cluster()));
        }
        var sc = One<V1StorageClass>(Desired(Cluster(c =>
        {
            c.Spec.Replication.Factor = 2;
            c.Spec.Replication.MinRacks = 1;
            c.Spec.StorageClass.FsType = "xfs";
        })));
        // The driver's own fsType key (for classes written by hand) next to the operator's keys.
        sc.Parameters["fsType"] = "xfs";
        return sc;
    }

    [Theory]
    [MemberData(nameof(Classes))]
    public async Task A_claim_on_the_generated_class_reaches_CreateVolume_as_external_provisioner_sends_it_and_succeeds(string which)
    {
        var sc = StorageClassFor(which);
        var deployment = One<V1Deployment>(Desired(Cluster()));
        await using var controller = await StartControllerAsync($"prov-{which}");
        var capabilities = await DriverCapabilities.QueryAsync(controller.Client);
        Assert.Null(SidecarStartupEmulation.Check("csi-provisioner", capabilities));
        // NodeGetInfo of a node plugin is what CSINode holds: its topology (none) is what the provisioner would use.
        var nodeInfo = await _f.Client.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        var segments = nodeInfo.AccessibleTopology is null ? [] : new[] { (IReadOnlyDictionary<string, string>)nodeInfo.AccessibleTopology.Segments.ToDictionary() };
        var claim = new ClaimEmulation(Guid.NewGuid().ToString(), $"data-{which}", "apps", ["ReadWriteOnce"], 24 * Csi.MiB);

        var request = ExternalProvisionerEmulation.BuildRequest(sc, deployment, claim, capabilities, segments);
        _f.Output.Current?.WriteLine($"CreateVolume {request}");
        Assert.Equal($"pvc-{claim.Uid}", request.Name);
        Assert.DoesNotContain(request.Parameters.Keys, k => k.StartsWith(ExternalProvisionerEmulation.Prefix, StringComparison.Ordinal));
        // The driver advertises no VOLUME_ACCESSIBILITY_CONSTRAINTS, so the provisioner sends no requirements.
        Assert.DoesNotContain(PluginService.VolumeAccessibilityConstraints, capabilities.PluginServices);
        Assert.Null(request.AccessibilityRequirements);

        var response = await controller.Client.Controller.CreateVolumeAsync(request);
        try
        {
            Assert.Equal(request.Name, response.Volume.VolumeId);
            Assert.True(response.Volume.CapacityBytes >= claim.RequestBytes);
            Assert.Empty(response.Volume.AccessibleTopology);
            var pv = ExternalProvisionerEmulation.ToPersistentVolume(request, response, claim, sc.Parameters[ExternalProvisionerEmulation.FsTypeKey]);
            Assert.Null(pv.Spec.NodeAffinity);
            var expectedReplicas = which == "default" ? 3u : 2u;
            var master = await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = request.Name });
            Assert.Equal(expectedReplicas, master.Replicas);
            Assert.Equal(expectedReplicas.ToString(System.Globalization.CultureInfo.InvariantCulture), response.Volume.VolumeContext["replicas"]);
            Assert.Equal(which == "default" ? "true" : "false", response.Volume.VolumeContext["rackSpread"]);
            // The provisioner retries CreateVolume with the same request after a timeout: same answer.
            Assert.Equal(response.Volume, (await controller.Client.Controller.CreateVolumeAsync(request)).Volume);
        }
        finally
        {
            // Deleting the claim: the provisioner's DeleteVolume with the PV's volume handle.
            await controller.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = response.Volume.VolumeId });
        }
        var gone = await Assert.ThrowsAsync<RpcException>(async () => await _f.Master.StatVolumeAsync(new MasterApi.StatVolumeRequest { Name = request.Name }));
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task The_provisioner_emulation_is_faithful_about_what_it_strips_and_what_the_driver_refuses()
    {
        var parameters = new Dictionary<string, string>
        {
            ["replicas"] = "2",
            ["csi.storage.k8s.io/fstype"] = "ext4",
            ["csi.storage.k8s.io/provisioner-secret-name"] = "s",
            ["csi.storage.k8s.io/provisioner-secret-namespace"] = "ns",
        };
        Assert.Equal(new Dictionary<string, string> { ["replicas"] = "2" }, ExternalProvisionerEmulation.StripParameters(parameters));
        Assert.Throws<InvalidOperationException>(() => ExternalProvisionerEmulation.StripParameters(new Dictionary<string, string> { ["csi.storage.k8s.io/typo"] = "x" }));
        // What issue 16 saw in a real cluster: a key outside csi.storage.k8s.io/ is passed through, and the driver refuses keys it does not know.
        await using var controller = await StartControllerAsync("prov-unknown");
        var request = Csi.Create($"pvc-{Guid.NewGuid()}", Csi.MiB, Csi.Mount());
        request.Parameters.Add(ExternalProvisionerEmulation.StripParameters(new Dictionary<string, string> { ["feitian.io/cluster"] = "storage.prod" }));
        var refused = await Csi.AssertCode(StatusCode.InvalidArgument, async () => await controller.Client.Controller.CreateVolumeAsync(request));
        Assert.Contains("unknown parameter 'feitian.io/cluster'", refused.Status.Detail);
        // The keys --extra-create-metadata would add are accepted.
        var withMetadata = Csi.Create($"pvc-{Guid.NewGuid()}", Csi.MiB, Csi.Mount());
        withMetadata.Parameters.Add(new Dictionary<string, string>
        {
            ["csi.storage.k8s.io/pvc/name"] = "data", ["csi.storage.k8s.io/pvc/namespace"] = "apps", ["csi.storage.k8s.io/pv/name"] = withMetadata.Name,
        });
        var created = await controller.Client.Controller.CreateVolumeAsync(withMetadata);
        await controller.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = created.Volume.VolumeId });
    }

    [Fact]
    public async Task Every_sidecar_of_the_generated_controller_deployment_passes_its_start_up_check_against_the_real_driver()
    {
        var desired = Desired(Cluster(), snapshotCrd: true);
        var deployment = One<V1Deployment>(desired);
        await using var controller = await StartControllerAsync("startup");
        var capabilities = await DriverCapabilities.QueryAsync(controller.Client);
        _f.Output.Current?.WriteLine($"plugin {string.Join(",", capabilities.PluginServices)} expansion {capabilities.VolumeExpansion} controller {string.Join(",", capabilities.ControllerRpcs)}");
        var names = deployment.Spec.Template.Spec.Containers.Select(c => c.Name).ToList();
        foreach (var name in names)
        {
            Assert.True(SidecarStartupEmulation.Check(name, capabilities) is null, $"{name} would fail against the driver: {SidecarStartupEmulation.Check(name, capabilities)}");
        }
        // The converse: a sidecar whose capability the driver advertises is there.
        foreach (var sidecar in new[] { "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter" })
        {
            var wouldWork = SidecarStartupEmulation.Check(sidecar, capabilities) is null;
            Assert.True(wouldWork == names.Contains(sidecar), $"{sidecar}: works against the driver {wouldWork}, deployed {names.Contains(sidecar)}");
        }
        // The driver serves snapshots: csi-snapshotter runs (and passes its check above), and with the snapshot CRDs installed there is a VolumeSnapshotClass.
        Assert.Contains("csi-snapshotter", names);
        Assert.Contains(desired, d => d.Kind == ResourceKind.SnapshotClass);
        // CSIDriver.attachRequired matches whether the driver publishes volumes (else the kubelet waits for attachments nobody makes).
        Assert.Equal(capabilities.ControllerRpcs.Contains(ControllerServiceCapability.Types.RPC.Types.Type.PublishUnpublishVolume), One<V1CSIDriver>(desired).Spec.AttachRequired);
    }

    [Fact]
    public async Task External_attacher_publish_gives_the_node_stage_what_it_needs()
    {
        var sc = StorageClassFor("default");
        var deployment = One<V1Deployment>(Desired(Cluster()));
        await using var controller = await StartControllerAsync("attach");
        var capabilities = await DriverCapabilities.QueryAsync(controller.Client);
        var claim = new ClaimEmulation(Guid.NewGuid().ToString(), "data-attach", "apps", ["ReadWriteOnce"], 32 * Csi.MiB);
        var request = ExternalProvisionerEmulation.BuildRequest(sc, deployment, claim, capabilities, []);
        var created = await controller.Client.Controller.CreateVolumeAsync(request);
        var pv = ExternalProvisionerEmulation.ToPersistentVolume(request, created, claim, sc.Parameters[ExternalProvisionerEmulation.FsTypeKey]);
        // CSINode.spec.drivers[].nodeID is what the node plugin's NodeGetInfo answered.
        var nodeId = (await _f.Client.Node.NodeGetInfoAsync(new NodeGetInfoRequest())).NodeId;
        var staging = _f.Root.Combine("kubelet", "attach", "staging");
        var singleNodeMultiWriter = capabilities.ControllerRpcs.Contains(ControllerServiceCapability.Types.RPC.Types.Type.SingleNodeMultiWriter);
        try
        {
            // A read-only attachment (PV csi.readOnly) is published read-only.
            pv.Spec.Csi.ReadOnlyProperty = true;
            var readOnly = await controller.Client.Controller.ControllerPublishVolumeAsync(ExternalAttacherEmulation.BuildRequest(pv, nodeId, singleNodeMultiWriter));
            Assert.Equal("false", readOnly.PublishContext["writable"]);
            await controller.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = pv.Spec.Csi.VolumeHandle, NodeId = nodeId });

            pv.Spec.Csi.ReadOnlyProperty = null;
            var publish = ExternalAttacherEmulation.BuildRequest(pv, nodeId, singleNodeMultiWriter);
            Assert.Equal("ext4", publish.VolumeCapability.Mount.FsType);
            var published = await controller.Client.Controller.ControllerPublishVolumeAsync(publish);
            Assert.Equal("true", published.PublishContext["writable"]);

            // The kubelet's NodeStageVolume: the PV's capability, volume context and the attachment's publish context.
            var stage = new NodeStageVolumeRequest
            {
                VolumeId = pv.Spec.Csi.VolumeHandle, StagingTargetPath = staging, VolumeCapability = publish.VolumeCapability,
            };
            stage.PublishContext.Add(published.PublishContext);
            stage.VolumeContext.Add(pv.Spec.Csi.VolumeAttributes);
            await _f.Client.Node.NodeStageVolumeAsync(stage);
            var file = Path.Combine(staging, "attached.bin");
            var data = Csi.Pattern((int)Csi.MiB, seed: 16);
            Csi.WriteDurably(file, data);
            Assert.Equal(data, await File.ReadAllBytesAsync(file));
            await _f.Client.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = pv.Spec.Csi.VolumeHandle, StagingTargetPath = staging });
            await controller.Client.Controller.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = pv.Spec.Csi.VolumeHandle, NodeId = nodeId });
        }
        finally
        {
            await controller.Client.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = created.Volume.VolumeId });
        }
    }
}
