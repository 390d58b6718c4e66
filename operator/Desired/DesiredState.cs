using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>What the cluster's environment looks like when the desired state is computed.</summary>
/// <param name="CsiLeaseNamespace">
/// Where the CSI controller sidecars keep their leader-election Leases (the operator's own lease
/// namespace, where the chart's namespaced Role is); null = the StorageCluster's namespace.
/// </param>
public sealed record ClusterEnvironment(IReadOnlyList<V1Node> Nodes, bool SnapshotClassCrdExists,
    string CsiClusterRolePrefix = Names.DefaultCsiClusterRolePrefix, string? CsiLeaseNamespace = null);

/// <summary>
/// Pure function from (StorageCluster, environment) to every object the operator maintains, in
/// creation order, each stamped with its content hash.
/// </summary>
public static class DesiredState
{
    public static IReadOnlyList<DesiredObject> Build(StorageCluster c, ClusterEnvironment env)
    {
        var racks = RackGrouping.Group(env.Nodes, c.Spec.ChunkServers.NodeSelector, c.Spec.ChunkServers.RackLabel);
        var list = new List<DesiredObject>
        {
            new(ResourceKind.Service, MasterBuilder.HeadlessService(c)),
            new(ResourceKind.Service, MasterBuilder.MetricsService(c)),
            new(ResourceKind.PodDisruptionBudget, MasterBuilder.DisruptionBudget(c)),
            new(ResourceKind.StatefulSet, MasterBuilder.StatefulSet(c)),
            new(ResourceKind.Service, ChunkServerBuilder.MetricsService(c)),
        };
        list.AddRange(racks.Racks.Select(r => new DesiredObject(ResourceKind.DaemonSet, ChunkServerBuilder.DaemonSet(c, r))));
        list.Add(new(ResourceKind.ServiceAccount, CsiBuilder.ServiceAccount(c)));
        list.Add(new(ResourceKind.ServiceAccount, CsiBuilder.NodeServiceAccount(c)));
        list.Add(new(ResourceKind.ClusterRoleBinding, CsiBuilder.RoleBinding(c, Names.CsiControllerClusterRole(env.CsiClusterRolePrefix), Names.ServiceAccount(c), CsiBuilder.ControllerComponent)));
        list.Add(new(ResourceKind.ClusterRoleBinding, CsiBuilder.RoleBinding(c, Names.CsiNodeClusterRole(env.CsiClusterRolePrefix), Names.NodeServiceAccount(c), CsiBuilder.NodeComponent)));
        var leaseNamespace = env.CsiLeaseNamespace ?? c.Metadata.NamespaceProperty;
        list.Add(new(ResourceKind.RoleBinding, CsiBuilder.LeaderElectionRoleBinding(c, Names.CsiLeaderElectionRole(env.CsiClusterRolePrefix), leaseNamespace)));
        list.Add(new(ResourceKind.Deployment, CsiBuilder.ControllerDeployment(c, leaseNamespace)));
        list.Add(new(ResourceKind.DaemonSet, VolumeHostBuilder.DaemonSet(c)));
        list.Add(new(ResourceKind.DaemonSet, CsiBuilder.NodeDaemonSet(c)));
        list.Add(new(ResourceKind.Service, CsiBuilder.NodeMetricsService(c)));
        list.Add(new(ResourceKind.CsiDriver, CsiBuilder.CsiDriver(c)));
        list.Add(new(ResourceKind.StorageClass, StorageClassBuilder.StorageClass(c)));
        if (env.SnapshotClassCrdExists && CsiSidecars.Snapshots)
        {
            list.Add(new(ResourceKind.SnapshotClass, StorageClassBuilder.SnapshotClass(c)));
            if (c.Spec.SnapshotTarget is not null)
            {
                list.Add(new(ResourceKind.SnapshotClass, StorageClassBuilder.BackupSnapshotClass(c)));
            }
        }
        foreach (var d in list)
        {
            var hash = SpecHash.Of(d.Object);
            d.Object.Metadata.Annotations ??= new Dictionary<string, string>();
            d.Object.Metadata.Annotations[Names.SpecHashAnnotation] = hash;
        }
        return list;
    }

    /// <summary>The volume-host DaemonSet among the desired objects.</summary>
    public static V1DaemonSet VolumeHostDaemonSet(IEnumerable<DesiredObject> desired) =>
        desired.Select(d => d.Object).OfType<V1DaemonSet>().Single(ds => ds.Metadata.Labels[Names.ComponentLabel] == VolumeHostBuilder.Component);

    /// <summary>The chunk-server DaemonSets among the desired objects, by rack.</summary>
    public static IEnumerable<V1DaemonSet> ChunkServerDaemonSets(IEnumerable<DesiredObject> desired) =>
        desired.Select(d => d.Object).OfType<V1DaemonSet>()
            .Where(ds => ds.Metadata.Labels[Names.ComponentLabel] == ChunkServerBuilder.Component);
}
