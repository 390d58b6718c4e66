using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// How a component pod gets its certificate: the whole Secret NAME-tls-ROLE mounted as a directory
/// (never with subPath: only a directory mount sees the kubelet's in-place updates of a renewed
/// Secret) and the --tls-* flags naming its files. Nothing at all when spec.tls.enabled is false.
/// </summary>
public static class TlsMount
{
    public const string MountPath = "/etc/feitian/tls";
    public const string VolumeName = "tls";

    public static string Scheme(StorageCluster c) => c.Spec.Tls.Enabled ? "https" : "http";

    public static IReadOnlyList<string> Args(StorageCluster c) => c.Spec.Tls.Enabled
        ? ["--tls-ca", $"{MountPath}/ca.crt", "--tls-cert", $"{MountPath}/tls.crt", "--tls-key", $"{MountPath}/tls.key"]
        : [];

    public static IReadOnlyList<V1VolumeMount> Mounts(StorageCluster c) => c.Spec.Tls.Enabled
        ? [new V1VolumeMount { Name = VolumeName, MountPath = MountPath, ReadOnlyProperty = true }]
        : [];

    /// <summary>The Secret volume of <paramref name="role"/> (a role of <see cref="ComponentRoles"/>); owner-readable only (0400).</summary>
    public static IReadOnlyList<V1Volume> Volumes(StorageCluster c, string role) => c.Spec.Tls.Enabled
        ? [new V1Volume { Name = VolumeName, Secret = new V1SecretVolumeSource { SecretName = Names.TlsSecret(c, role), DefaultMode = 256 } }]
        : [];

    /// <summary>The DNS names a role's certificate carries besides its role URI (clients do not check host names; this is for tools that do).</summary>
    public static IReadOnlyList<string> DnsNames(StorageCluster c, string role)
    {
        var ns = c.Metadata.NamespaceProperty;
        return role switch
        {
            ComponentRoles.Master =>
            [
                Names.Master(c), $"{Names.Master(c)}.{ns}", $"{Names.Master(c)}.{ns}.svc", $"{Names.Master(c)}.{ns}.svc.cluster.local",
                $"*.{Names.Master(c)}.{ns}.svc", $"*.{Names.Master(c)}.{ns}.svc.cluster.local",
                $"{Names.MasterMetrics(c)}.{ns}.svc",
            ],
            ComponentRoles.ChunkServer => [$"{Names.ChunkServerMetrics(c)}.{ns}.svc"],
            _ => [],
        };
    }
}
