using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FeitianK8s.Core.Security;

/// <summary>
/// A cluster CA (ECDSA P-256, self-signed) that issues one certificate per component: the role
/// as a SAN URI (<see cref="ComponentRoles"/>), DNS names and IP addresses for the server side,
/// usable for both server and client authentication.
/// </summary>
public sealed class CertificateAuthority : IDisposable
{
    private readonly X509Certificate2 _certificate;

    private CertificateAuthority(X509Certificate2 certificate)
    {
        _certificate = certificate;
    }

    /// <summary>The CA certificate (with its private key).</summary>
    public X509Certificate2 Certificate => _certificate;

    public static CertificateAuthority Create(string name, TimeSpan validity, DateTimeOffset? now = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={name}, O=feitian"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var start = (now ?? DateTimeOffset.UtcNow).AddMinutes(-5);
        return new CertificateAuthority(request.CreateSelfSigned(start, start + validity));
    }

    /// <summary>A CA from its PEM certificate and key files.</summary>
    public static CertificateAuthority Load(string certFile, string keyFile) =>
        new(X509Certificate2.CreateFromPemFile(certFile, keyFile));

    /// <summary>A CA from its PEM certificate and key (e.g. the data of a Kubernetes Secret).</summary>
    public static CertificateAuthority FromPem(string certPem, string keyPem) =>
        new(X509Certificate2.CreateFromPem(certPem, keyPem));

    /// <summary>
    /// Whether <paramref name="current"/> should be replaced by a new certificate: not issued by
    /// this CA (signature chain), or less than a third of its lifetime left at <paramref name="now"/>.
    /// </summary>
    public bool IsDueForRenewal(X509Certificate2 current, DateTimeOffset now)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_certificate);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        if (!chain.Build(current))
        {
            return true;
        }
        var lifetime = current.NotAfter.ToUniversalTime() - current.NotBefore.ToUniversalTime();
        return now.UtcDateTime > current.NotAfter.ToUniversalTime() - (lifetime / 3);
    }

    /// <summary>A certificate for <paramref name="role"/>, valid from a few minutes ago for <paramref name="validity"/> (within the CA's own validity).</summary>
    public X509Certificate2 Issue(string role, string commonName, IEnumerable<string> dnsNames, IEnumerable<IPAddress> addresses, TimeSpan validity,
        DateTimeOffset? now = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={commonName}, OU={role}, O=feitian"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_certificate, true, false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(ComponentRoles.ToUri(role));
        foreach (var dns in dnsNames.Distinct(StringComparer.OrdinalIgnoreCase))
        {
            san.AddDnsName(dns);
        }
        foreach (var address in addresses.Distinct())
        {
            san.AddIpAddress(address);
        }
        request.CertificateExtensions.Add(san.Build());
        var start = (now ?? DateTimeOffset.UtcNow).AddMinutes(-5);
        if (start < _certificate.NotBefore)
        {
            start = _certificate.NotBefore;
        }
        var end = start + validity;
        if (end > _certificate.NotAfter)
        {
            end = _certificate.NotAfter;
        }
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(_certificate, start, end, serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>The certificate as PEM.</summary>
    public static string CertificatePem(X509Certificate2 certificate) => certificate.ExportCertificatePem();

    /// <summary>The private key as PKCS#8 PEM.</summary>
    public static string KeyPem(X509Certificate2 certificate) =>
        (certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("the certificate has no ECDSA private key")).ExportPkcs8PrivateKeyPem();

    /// <summary>
    /// Writes certificate and key (key readable by the owner only), each through a temp file and a
    /// rename, key first: a reader sees the old pair, or the new key with the old certificate for an
    /// instant (it then keeps the pair it had), never a torn file.
    /// </summary>
    public static void WritePem(X509Certificate2 certificate, string certFile, string keyFile)
    {
        WriteAtomically(keyFile, KeyPem(certificate), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        WriteAtomically(certFile, CertificatePem(certificate), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
    }

    public static void WriteAtomically(string path, string text, UnixFileMode mode)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = mode;
        }
        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(text);
            writer.Flush();
            stream.Flush(true);
        }
        File.Move(temp, path, overwrite: true);
    }

    public void Dispose() => _certificate.Dispose();
}
