using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>The StorageClass (and, once the driver serves snapshots, the VolumeSnapshotClass) that make the cluster usable from PVCs.</summary>
public static class StorageClassBuilder
{
    public const string Component = "storage-class";

    public static V1StorageClass StorageClass(StorageCluster c)
    {
        var spec = c.Spec.StorageClass;
        var meta = Meta.ClusterScoped(c, spec.Name, Component);
        if (spec.IsDefault)
        {
            meta.Annotations = new Dictionary<string, string> { ["storageclass.kubernetes.io/is-default-class"] = "true" };
        }
        return new V1StorageClass
        {
            ApiVersion = "storage.k8s.io/v1",
            Kind = "StorageClass",
            Metadata = meta,
            Provisioner = Names.CsiDriverName,
            ReclaimPolicy = "Delete",
            VolumeBindingMode = "WaitForFirstConsumer",
            AllowVolumeExpansion = true,
            Parameters = new Dictionary<string, string>
            {
                ["replicas"] = c.Spec.Replication.Factor.ToString(),
                ["rackSpread"] = (c.Spec.Replication.MinRacks > 1).ToString().ToLowerInvariant(),
                // external-provisioner takes this one out of the parameters (into the volume
                // capability); every other key reaches CreateVolume, so only keys the driver accepts.
                // The owning cluster is in the owner label, never in a parameter.
                ["csi.storage.k8s.io/fstype"] = spec.FsType,
            },
        };
    }

    /// <summary>The driver's VolumeSnapshotClass parameter that also backs a snapshot up to the snapshot target.</summary>
    public const string BackupParameter = "feitian.io/backup";

    public static VolumeSnapshotClass SnapshotClass(StorageCluster c) => new()
    {
        Metadata = Meta.ClusterScoped(c, c.Spec.StorageClass.Name, Component),
        Driver = Names.CsiDriverName,
        DeletionPolicy = "Delete",
    };

    /// <summary>With a snapshot target: class <c>NAME-backup</c>, whose snapshots are also backed up to it.</summary>
    public static VolumeSnapshotClass BackupSnapshotClass(StorageCluster c) => new()
    {
        Metadata = Meta.ClusterScoped(c, c.Spec.StorageClass.Name + "-backup", Component),
        Driver = Names.CsiDriverName,
        DeletionPolicy = "Delete",
        Parameters = new Dictionary<string, string> { [BackupParameter] = "true" },
    };
}
