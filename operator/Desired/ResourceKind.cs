using FeitianK8s.Operator.Resources;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>Where a kind of object lives in the API (group "" is the core group).</summary>
public sealed record ResourceKind(string Group, string Version, string Plural, bool Namespaced, Type ClrType)
{
    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    public static readonly ResourceKind StatefulSet = new("apps", "v1", "statefulsets", true, typeof(V1StatefulSet));
    public static readonly ResourceKind DaemonSet = new("apps", "v1", "daemonsets", true, typeof(V1DaemonSet));
    public static readonly ResourceKind Deployment = new("apps", "v1", "deployments", true, typeof(V1Deployment));
    public static readonly ResourceKind Service = new("", "v1", "services", true, typeof(V1Service));
    public static readonly ResourceKind ServiceAccount = new("", "v1", "serviceaccounts", true, typeof(V1ServiceAccount));
    public static readonly ResourceKind Pod = new("", "v1", "pods", true, typeof(V1Pod));
    public static readonly ResourceKind Node = new("", "v1", "nodes", false, typeof(V1Node));
    public static readonly ResourceKind PodDisruptionBudget = new("policy", "v1", "poddisruptionbudgets", true, typeof(V1PodDisruptionBudget));
    public static readonly ResourceKind CsiDriver = new("storage.k8s.io", "v1", "csidrivers", false, typeof(V1CSIDriver));
    public static readonly ResourceKind VolumeAttachment = new("storage.k8s.io", "v1", "volumeattachments", false, typeof(V1VolumeAttachment));
    public static readonly ResourceKind StorageClass = new("storage.k8s.io", "v1", "storageclasses", false, typeof(V1StorageClass));
    public static readonly ResourceKind SnapshotClass = new(VolumeSnapshotClass.Group, VolumeSnapshotClass.Version, VolumeSnapshotClass.Plural, false, typeof(VolumeSnapshotClass));
    public static readonly ResourceKind ClusterRoleBinding = new("rbac.authorization.k8s.io", "v1", "clusterrolebindings", false, typeof(V1ClusterRoleBinding));
    public static readonly ResourceKind RoleBinding = new("rbac.authorization.k8s.io", "v1", "rolebindings", true, typeof(V1RoleBinding));
    public static readonly ResourceKind Crd = new("apiextensions.k8s.io", "v1", "customresourcedefinitions", false, typeof(V1CustomResourceDefinition));
    public static readonly ResourceKind Secret = new("", "v1", "secrets", true, typeof(V1Secret));
    public static readonly ResourceKind NetworkPolicy = new("networking.k8s.io", "v1", "networkpolicies", true, typeof(V1NetworkPolicy));
    public static readonly ResourceKind Issuer = new(CertManagerIssuer.Group, CertManagerIssuer.Version, CertManagerIssuer.Plural, true, typeof(CertManagerIssuer));
    public static readonly ResourceKind Certificate = new(CertManagerIssuer.Group, CertManagerIssuer.Version, CertManagerCertificate.Plural, true, typeof(CertManagerCertificate));
    public static readonly ResourceKind StorageClusters = new(StorageCluster.Group, StorageCluster.Version, StorageCluster.Plural, true, typeof(StorageCluster));
    public static readonly ResourceKind Volumes = new(StorageCluster.Group, StorageCluster.Version, Volume.Plural, true, typeof(Volume));
}

/// <summary>One object the operator wants to exist, with the kind that tells where it lives.</summary>
public sealed record DesiredObject(ResourceKind Kind, IKubernetesObject<V1ObjectMeta> Object)
{
    public string Name => Object.Metadata.Name;
    public string? Namespace => Object.Metadata.NamespaceProperty;
    public override string ToString() => Namespace is null ? $"{Kind.Plural}/{Name}" : $"{Kind.Plural}/{Namespace}/{Name}";
}
