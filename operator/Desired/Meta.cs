using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>Object metadata for what the operator creates: labels, and the owner reference or owner label.</summary>
public static class Meta
{
    public static V1OwnerReference OwnerReference(StorageCluster c) => new()
    {
        ApiVersion = StorageCluster.ApiVersionName,
        Kind = StorageCluster.KindName,
        Name = c.Metadata.Name,
        Uid = c.Metadata.Uid,
        Controller = true,
        BlockOwnerDeletion = true,
    };

    /// <summary>Metadata of a namespaced child: same namespace, owned (garbage-collected) by the cluster.</summary>
    public static V1ObjectMeta Owned(StorageCluster c, string name, string component) => new()
    {
        Name = name,
        NamespaceProperty = c.Metadata.NamespaceProperty,
        Labels = Names.Labels(c, component),
        OwnerReferences = [OwnerReference(c)],
    };

    /// <summary>
    /// Metadata of a cluster-scoped object. Kubernetes forbids a namespaced owner for it, so it carries
    /// the owner label instead and the operator deletes it itself when the cluster goes away.
    /// </summary>
    public static V1ObjectMeta ClusterScoped(StorageCluster c, string name, string component)
    {
        var labels = Names.Labels(c, component);
        labels[Names.OwnerLabel] = Names.OwnerValue(c);
        return new V1ObjectMeta { Name = name, Labels = labels };
    }

    public static V1EnvVar FieldEnv(string name, string fieldPath) =>
        new() { Name = name, ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = fieldPath } } };
}
