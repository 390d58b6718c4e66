namespace FeitianK8s.Operator.Volumes;

/// <summary>Labels, annotations and the finalizer through which Volume objects and master volumes name each other.</summary>
public static class VolumeNames
{
    /// <summary>On user-created Volumes: the master volume is deleted before the object goes away.</summary>
    public const string Finalizer = "feitian.io/volume";

    /// <summary>
    /// On Volume objects the operator made for a master volume nobody declared: "csi" (made by the CSI
    /// driver) or "master" (made some other way, e.g. the feitian CLI). Such mirrors never delete data.
    /// </summary>
    public const string OriginLabel = "feitian.io/origin";
    public const string OriginCsi = "csi";
    public const string OriginMaster = "master";

    /// <summary>On a user Volume that took over an existing, compatible master volume it did not create.</summary>
    public const string AdoptedAnnotation = "feitian.io/adopted";

    /// <summary>Master-volume label: uid of the Volume object the operator created it for.</summary>
    public const string VolumeUidLabel = "feitian.io/volume-uid";
    /// <summary>Master-volume label: "namespace/name" of that Volume object (for people reading the master).</summary>
    public const string VolumeRefLabel = "feitian.io/volume";

    /// <summary>Master-volume labels the CSI driver writes (csi-driver/Controller/VolumeParameters.cs).</summary>
    public const string CsiManagedByLabel = "csi.feitian.io/managed-by";
    public const string CsiRackSpreadLabel = "csi.feitian.io/rack-spread";

    /// <summary>spec.sourceSnapshot names a cluster snapshot: a DNS-1123 subdomain of at most 253 characters (as the CRD validates).</summary>
    public static bool IsSnapshotName(string name) =>
        name.Length is > 0 and <= 253 && System.Text.RegularExpressions.Regex.IsMatch(name,
            "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
}
