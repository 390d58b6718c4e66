using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Security;

/// <summary>
/// The certificates of a local cluster (`feitian up`, tests) under DIR (DATA/tls): a CA
/// (ca.crt, ca.key) made once and kept, and one certificate per role (ROLE.crt, ROLE.key)
/// for 127.0.0.1 and localhost, renewed when a third of its lifetime is left. To bring your
/// own CA, put its ca.crt and ca.key there before the first start; with ca.crt but no ca.key,
/// the ROLE.crt/ROLE.key files found there are used as they are.
/// </summary>
public static class LocalPki
{
    public const string DirectoryName = "tls";
    public static readonly TimeSpan CaValidity = TimeSpan.FromDays(3650);
    public static readonly TimeSpan CertificateValidity = TimeSpan.FromDays(365);

    /// <summary>DATA/tls.</summary>
    public static string DirectoryOf(string dataDir) => Path.Combine(dataDir, DirectoryName);

    /// <summary>The files of <paramref name="role"/> under <paramref name="tlsDir"/>.</summary>
    public static TlsFiles Files(string tlsDir, string role) => TlsFiles.InDirectory(tlsDir, role);

    /// <summary>Makes the CA and every role's certificate that is missing or due for renewal.</summary>
    public static void Ensure(string tlsDir, ILogger? log = null)
    {
        Directory.CreateDirectory(tlsDir);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(tlsDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        var caCert = Path.Combine(tlsDir, TlsFiles.CaCertName);
        var caKey = Path.Combine(tlsDir, TlsFiles.CaKeyName);
        if (File.Exists(caCert) && !File.Exists(caKey))
        {
            // Brought-your-own certificates without the CA key: use them as they are.
            using var trusted = X509CertificateLoader.LoadCertificateFromFile(caCert);
            var due = ComponentRoles.All.Where(r => r is ComponentRoles.Master or ComponentRoles.ChunkServer or ComponentRoles.Admin)
                .Where(r => DueForRenewal(Files(tlsDir, r), trusted)).ToList();
            if (due.Count > 0)
            {
                throw new InvalidOperationException(
                    $"{string.Join(", ", due.Select(r => Files(tlsDir, r).CertFile))} missing, expiring or not issued by {caCert}, and there is no {caKey} to issue new ones");
            }
            return;
        }
        if (!File.Exists(caCert))
        {
            using var fresh = CertificateAuthority.Create("feitian local CA", CaValidity);
            CertificateAuthority.WritePem(fresh.Certificate, caCert, caKey);
            log?.LogInformation("Created a cluster CA in {Directory}", tlsDir);
        }
        using var ca = CertificateAuthority.Load(caCert, caKey);
        foreach (var role in ComponentRoles.All)
        {
            var files = Files(tlsDir, role);
            if (!DueForRenewal(files, ca.Certificate))
            {
                continue;
            }
            using var issued = ca.Issue(role, $"feitian-{role}", ["localhost"], [IPAddress.Loopback, IPAddress.IPv6Loopback], CertificateValidity);
            CertificateAuthority.WritePem(issued, files.CertFile, files.KeyFile);
            log?.LogInformation("Issued the {Role} certificate in {Directory}", role, tlsDir);
        }
    }

    /// <summary>Issues <paramref name="role"/> a new certificate from the CA in <paramref name="tlsDir"/> now (a rotation); running processes pick it up from the files.</summary>
    public static X509Certificate2 Reissue(string tlsDir, string role, TimeSpan? validity = null)
    {
        using var ca = CertificateAuthority.Load(Path.Combine(tlsDir, TlsFiles.CaCertName), Path.Combine(tlsDir, TlsFiles.CaKeyName));
        var issued = ca.Issue(role, $"feitian-{role}", ["localhost"], [IPAddress.Loopback, IPAddress.IPv6Loopback], validity ?? CertificateValidity);
        var files = Files(tlsDir, role);
        CertificateAuthority.WritePem(issued, files.CertFile, files.KeyFile);
        return issued;
    }

    /// <summary>Missing, unreadable, from another CA, or with less than a third of its lifetime left.</summary>
    public static bool DueForRenewal(TlsFiles files, X509Certificate2 ca, DateTimeOffset? now = null)
    {
        if (!File.Exists(files.CertFile) || !File.Exists(files.KeyFile))
        {
            return true;
        }
        try
        {
            using var current = X509Certificate2.CreateFromPemFile(files.CertFile, files.KeyFile);
            var lifetime = current.NotAfter - current.NotBefore;
            return current.Issuer != ca.Subject
                || (now ?? DateTimeOffset.Now) > current.NotAfter - (lifetime / 3);
        }
        catch (Exception error) when (error is System.Security.Cryptography.CryptographicException or IOException or ArgumentException)
        {
            return true;
        }
    }
}
