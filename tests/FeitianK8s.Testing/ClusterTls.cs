using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Security;
using Grpc.Net.Client;

namespace FeitianK8s.Testing;

/// <summary>
/// How tests talk to a <see cref="LocalClusterLauncher"/> cluster, which serves mutual TLS by
/// default: channels and process arguments carrying the certificate of a role (the admin CLI's
/// unless said otherwise) from the cluster's DIR/tls; plain HTTP/2 for an insecure cluster.
/// </summary>
public static class ClusterTls
{
    /// <summary>A channel to <paramref name="address"/> presenting <paramref name="role"/>'s certificate.</summary>
    public static GrpcChannel Channel(this LocalClusterLauncher launcher, string address, string role = ComponentRoles.Admin, int maxMessageBytes = 16 << 20) =>
        GrpcChannels.Create(address, maxMessageBytes, tls: launcher.ClientTls(role));

    /// <summary>--tls-ca/--tls-cert/--tls-key of <paramref name="role"/> for a CLI, CSI driver or operator process; empty without TLS.</summary>
    public static IReadOnlyList<string> TlsArgs(this LocalClusterLauncher launcher, string role = ComponentRoles.Admin) =>
        launcher.TlsDirectory is { } dir ? LocalPki.Files(dir, role).ToArgs() : [];

    /// <summary>The files of <paramref name="role"/>; null without TLS.</summary>
    public static TlsFiles? TlsFiles(this LocalClusterLauncher launcher, string role = ComponentRoles.Admin) =>
        launcher.TlsDirectory is { } dir ? LocalPki.Files(dir, role) : null;
}
