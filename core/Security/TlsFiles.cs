namespace FeitianK8s.Core.Security;

/// <summary>
/// Where a component finds its TLS material: the CA bundle it trusts (PEM, one or more
/// certificates), its own certificate and its private key (PEM). The files may be replaced at
/// any time (a renewed certificate): readers pick the new ones up without a restart.
/// </summary>
public sealed record TlsFiles(string CaFile, string CertFile, string KeyFile)
{
    public const string CaCertName = "ca.crt";
    public const string CaKeyName = "ca.key";

    /// <summary>DIR/ca.crt, DIR/NAME.crt, DIR/NAME.key: the layout `feitian up` writes under DATA/tls.</summary>
    public static TlsFiles InDirectory(string directory, string name) =>
        new(Path.Combine(directory, CaCertName), Path.Combine(directory, name + ".crt"), Path.Combine(directory, name + ".key"));

    /// <summary>The command-line flags that hand these files to a server process.</summary>
    public IReadOnlyList<string> ToArgs() => ["--tls-ca", CaFile, "--tls-cert", CertFile, "--tls-key", KeyFile];

    /// <summary>
    /// The files named by --tls-ca/--tls-cert/--tls-key: all three or none (null).
    /// </summary>
    public static TlsFiles? FromOptions(string? ca, string? cert, string? key)
    {
        var given = new[] { ca, cert, key }.Count(v => !string.IsNullOrWhiteSpace(v));
        if (given == 0)
        {
            return null;
        }
        if (given != 3)
        {
            throw new ArgumentException("--tls-ca, --tls-cert and --tls-key go together: give all three or none");
        }
        return new TlsFiles(Path.GetFullPath(ca!), Path.GetFullPath(cert!), Path.GetFullPath(key!));
    }
}
