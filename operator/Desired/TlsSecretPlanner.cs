using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Resources;
using k8s.Models;

namespace FeitianK8s.Operator.Desired;

/// <summary>A Secret to create (no resourceVersion) or replace in place (the existing one's resourceVersion), and why.</summary>
public sealed record PlannedSecret(V1Secret Secret, string Reason)
{
    public bool IsNew => Secret.Metadata.ResourceVersion is null;
}

/// <summary>
/// The certificates the operator issues itself (no cert-manager): a CA Secret NAME-tls-ca (ca.crt,
/// ca.key; made once and kept, a CA you put there before the cluster is used as it is) and one
/// kubernetes.io/tls Secret NAME-tls-ROLE per role (tls.crt, tls.key, ca.crt), issued when missing,
/// not chained to the CA, of the wrong role, or with less than a third of its lifetime left; a
/// renewal replaces the data of the same Secret, which the kubelet swaps into running pods.
/// The CA itself is never rotated here.
/// </summary>
public static class TlsSecretPlanner
{
    public const string CaCertKey = "ca.crt";
    public const string CaKeyKey = "ca.key";
    public const string CertKey = "tls.crt";
    public const string KeyKey = "tls.key";
    public const string TlsComponent = "tls";
    public static readonly TimeSpan CaValidity = TimeSpan.FromDays(3650);
    public static readonly TimeSpan CertificateValidity = TimeSpan.FromDays(90);

    /// <summary>
    /// What to write now. <paramref name="existing"/> holds the current Secret of each role (absent = none).
    /// Throws <see cref="InvalidOperationException"/> when the CA Secret exists but is unusable (it is not
    /// ours to overwrite).
    /// </summary>
    public static IReadOnlyList<PlannedSecret> Plan(StorageCluster c, V1Secret? caSecret, IReadOnlyDictionary<string, V1Secret> existing,
        DateTimeOffset now, TimeSpan? validity = null)
    {
        var plan = new List<PlannedSecret>();
        CertificateAuthority ca;
        if (caSecret is null)
        {
            ca = CertificateAuthority.Create($"feitian {c.Metadata.NamespaceProperty}/{c.Metadata.Name} CA", CaValidity, now);
            plan.Add(new PlannedSecret(CaSecret(c, ca), "created the cluster CA"));
        }
        else
        {
            ca = LoadCa(c, caSecret);
        }
        using (ca)
        {
            var caPem = CertificateAuthority.CertificatePem(ca.Certificate);
            foreach (var role in ComponentRoles.All)
            {
                existing.TryGetValue(role, out var current);
                var reason = RenewalReason(ca, caPem, role, current, now);
                if (reason is null)
                {
                    continue;
                }
                using var issued = ca.Issue(role, $"feitian-{role}", TlsMount.DnsNames(c, role), [], validity ?? CertificateValidity, now);
                var secret = RoleSecret(c, role, issued, caPem);
                secret.Metadata.ResourceVersion = current?.Metadata.ResourceVersion;
                plan.Add(new PlannedSecret(secret, $"{reason}: certificate of role {role} valid until {issued.NotAfter.ToUniversalTime():u}"));
            }
        }
        return plan;
    }

    /// <summary>Null when <paramref name="current"/> is fine as it is; else why it is (re)issued.</summary>
    private static string? RenewalReason(CertificateAuthority ca, string caPem, string role, V1Secret? current, DateTimeOffset now)
    {
        if (current is null)
        {
            return "issued";
        }
        if (Text(current, CertKey) is not { } certPem || Text(current, KeyKey) is not { } keyPem)
        {
            return "reissued (tls.crt or tls.key missing)";
        }
        try
        {
            using var certificate = X509Certificate2.CreateFromPem(certPem, keyPem);
            if (ComponentRoles.Of(certificate) != role)
            {
                return $"reissued (the certificate names role {ComponentRoles.Of(certificate) ?? "none"})";
            }
            if (Text(current, CaCertKey) != caPem)
            {
                return "reissued (ca.crt is not the cluster CA)";
            }
            return ca.IsDueForRenewal(certificate, now) ? "renewed" : null;
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            return $"reissued (unreadable: {e.Message})";
        }
    }

    private static CertificateAuthority LoadCa(StorageCluster c, V1Secret secret)
    {
        if (Text(secret, CaCertKey) is not { } cert || Text(secret, CaKeyKey) is not { } key)
        {
            throw new InvalidOperationException($"secret {Names.TlsCaSecret(c)} has no {CaCertKey} and {CaKeyKey}: delete it to have the operator make a CA, or put your CA there");
        }
        try
        {
            return CertificateAuthority.FromPem(cert, key);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException($"secret {Names.TlsCaSecret(c)}: {CaCertKey}/{CaKeyKey} are not a PEM certificate and its key ({e.Message})", e);
        }
    }

    public static V1Secret CaSecret(StorageCluster c, CertificateAuthority ca) => new()
    {
        ApiVersion = "v1",
        Kind = "Secret",
        Metadata = Meta.Owned(c, Names.TlsCaSecret(c), TlsComponent),
        Type = "Opaque",
        Data = new Dictionary<string, byte[]>
        {
            [CaCertKey] = Encoding.ASCII.GetBytes(CertificateAuthority.CertificatePem(ca.Certificate)),
            [CaKeyKey] = Encoding.ASCII.GetBytes(CertificateAuthority.KeyPem(ca.Certificate)),
        },
    };

    public static V1Secret RoleSecret(StorageCluster c, string role, X509Certificate2 certificate, string caPem)
    {
        var meta = Meta.Owned(c, Names.TlsSecret(c, role), TlsComponent);
        meta.Labels[Names.TlsRoleLabel] = role;
        return new V1Secret
        {
            ApiVersion = "v1",
            Kind = "Secret",
            Metadata = meta,
            Type = "kubernetes.io/tls",
            Data = new Dictionary<string, byte[]>
            {
                [CertKey] = Encoding.ASCII.GetBytes(CertificateAuthority.CertificatePem(certificate)),
                [KeyKey] = Encoding.ASCII.GetBytes(CertificateAuthority.KeyPem(certificate)),
                [CaCertKey] = Encoding.ASCII.GetBytes(caPem),
            },
        };
    }

    public static string? Text(V1Secret secret, string key) =>
        secret.Data is not null && secret.Data.TryGetValue(key, out var bytes) && bytes.Length > 0 ? Encoding.ASCII.GetString(bytes) : null;
}
