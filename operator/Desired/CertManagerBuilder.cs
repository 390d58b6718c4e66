using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Resources;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// The certificates through cert-manager (when its Certificate CRD is installed): a self-signed
/// Issuer signs the cluster CA (Certificate NAME-tls-ca, Secret NAME-tls-ca with tls.crt, tls.key,
/// ca.crt), a CA Issuer NAME-ca issues one Certificate per role into the same Secret names the
/// operator would write (NAME-tls-ROLE), so the pods do not change. cert-manager renews a
/// certificate when a third of its 90 days is left, in place.
/// </summary>
public static class CertManagerBuilder
{
    public const string Duration = "2160h";
    public const string RenewBefore = "720h";
    public const string CaDuration = "87600h";

    public static IEnumerable<DesiredObject> Objects(StorageCluster c)
    {
        yield return new(ResourceKind.Issuer, new CertManagerIssuer
        {
            Metadata = Meta.Owned(c, Names.SelfSignedIssuer(c), TlsSecretPlanner.TlsComponent),
            Spec = new IssuerSpec { SelfSigned = [] },
        });
        yield return new(ResourceKind.Certificate, new CertManagerCertificate
        {
            Metadata = Meta.Owned(c, Names.TlsCaSecret(c), TlsSecretPlanner.TlsComponent),
            Spec = new CertificateSpec
            {
                SecretName = Names.TlsCaSecret(c),
                CommonName = $"feitian {c.Metadata.NamespaceProperty}/{c.Metadata.Name} CA",
                IsCa = true,
                Duration = CaDuration,
                PrivateKey = new CertificatePrivateKey { RotationPolicy = "Never" },
                IssuerRef = new IssuerReference { Name = Names.SelfSignedIssuer(c) },
            },
        });
        yield return new(ResourceKind.Issuer, new CertManagerIssuer
        {
            Metadata = Meta.Owned(c, Names.CaIssuer(c), TlsSecretPlanner.TlsComponent),
            Spec = new IssuerSpec { Ca = new CaIssuer { SecretName = Names.TlsCaSecret(c) } },
        });
        foreach (var role in ComponentRoles.All)
        {
            var meta = Meta.Owned(c, Names.TlsSecret(c, role), TlsSecretPlanner.TlsComponent);
            meta.Labels[Names.TlsRoleLabel] = role;
            var dns = TlsMount.DnsNames(c, role);
            yield return new(ResourceKind.Certificate, new CertManagerCertificate
            {
                Metadata = meta,
                Spec = new CertificateSpec
                {
                    SecretName = Names.TlsSecret(c, role),
                    CommonName = $"feitian-{role}",
                    Duration = Duration,
                    RenewBefore = RenewBefore,
                    Uris = [ComponentRoles.ToUri(role).ToString()],
                    DnsNames = dns.Count == 0 ? null : [.. dns],
                    Usages = ["digital signature", "server auth", "client auth"],
                    SecretTemplate = new CertificateSecretTemplate { Labels = new Dictionary<string, string>(meta.Labels) },
                    IssuerRef = new IssuerReference { Name = Names.CaIssuer(c) },
                },
            });
        }
    }
}
