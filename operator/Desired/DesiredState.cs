using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>What the cluster's environment looks like when the desired state is computed.</summary>
/// <param name="CsiLeaseNamespace">
/// Where the CSI controller sidecars keep their leader-election Leases (the operator's own lease
/// namespace, where the chart's namespaced Role is); null = the StorageCluster's namespace.
/// </param>
/// <param name="CertManagerCrdExists">cert-manager's certificates.cert-manager.io CRD is installed.</param>
/// <param name="OperatorCaExists">The CA Secret holds a CA the operator made (ca.crt and ca.key), not cert-manager's.</param>
/// <param name="Operator">The operator's namespace and pod labels (NetworkPolicies admit them); null = the CSI lease namespace and the chart's labels.</param>
public sealed record ClusterEnvironment(IReadOnlyList<V1Node> Nodes, bool SnapshotClassCrdExists,
    string CsiClusterRolePrefix = Names.DefaultCsiClusterRolePrefix, string? CsiLeaseNamespace = null,
    bool CertManagerCrdExists = false, OperatorPeer? Operator = null, bool OperatorCaExists = false)
{
    public TlsIssuer Issuer(StorageCluster c) => !c.Spec.Tls.Enabled
        ? TlsIssuer.None
        : c.Spec.Tls.Issuer switch
        {
            "operator" => TlsIssuer.Operator,
            "cert-manager" => CertManagerCrdExists ? TlsIssuer.CertManager : TlsIssuer.CertManagerMissing,
            // auto: a cluster whose CA the operator already made stays with it (a switch would change the CA under running pods).
            _ => CertManagerCrdExists && !OperatorCaExists ? TlsIssuer.CertManager : TlsIssuer.Operator,
        };
}

/// <summary>Who makes a cluster's certificate Secrets.</summary>
public enum TlsIssuer
{
    /// <summary>spec.tls.enabled is false.</summary>
    None,
    /// <summary>The operator itself (<see cref="TlsSecretPlanner"/>).</summary>
    Operator,
    /// <summary>cert-manager, through the objects of <see cref="CertManagerBuilder"/>.</summary>
    CertManager,
    /// <summary>spec.tls.issuer is cert-manager but its CRD is not installed: nobody issues, pods wait for their Secrets.</summary>
    CertManagerMissing,
}

/// <summary>
/// Pure function from (StorageCluster, environment) to every object the operator maintains, in
/// creation order, each stamped with its content hash.
/// </summary>
public static class DesiredState
{
    public static IReadOnlyList<DesiredObject> Build(StorageCluster c, ClusterEnvironment env)
    {
        var racks = RackGrouping.Group(env.Nodes, c.Spec.ChunkServers.NodeSelector, c.Spec.ChunkServers.RackLabel);
        var list = new List<DesiredObject>();
        if (env.Issuer(c) == TlsIssuer.CertManager)
        {
            list.AddRange(CertManagerBuilder.Objects(c));
        }
        if (c.Spec.NetworkPolicies.Enabled)
        {
            var op = env.Operator ?? new OperatorPeer(env.CsiLeaseNamespace ?? c.Metadata.NamespaceProperty, OperatorPeer.ChartPodLabels);
            list.Add(new(ResourceKind.NetworkPolicy, NetworkPolicyBuilder.Masters(c, op)));
            list.Add(new(ResourceKind.NetworkPolicy, NetworkPolicyBuilder.ChunkServers(c, op)));
        }
        list.AddRange(
        [
            new(ResourceKind.Service, MasterBuilder.HeadlessService(c)),
            new(ResourceKind.Service, MasterBuilder.MetricsService(c)),
            new(ResourceKind.PodDisruptionBudget, MasterBuilder.DisruptionBudget(c)),
            new(ResourceKind.StatefulSet, MasterBuilder.StatefulSet(c)),
            new(ResourceKind.Service, ChunkServerBuilder.MetricsService(c)),
        ]);
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
