using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Core.Security;

/// <summary>The outcome of checking a peer's certificate: its role when trusted, else the reason.</summary>
public readonly record struct CertificateCheck(string? Role, string? Refusal)
{
    public bool Trusted => Refusal is null;
    public static CertificateCheck Ok(string role) => new(role, null);
    public static CertificateCheck Refused(string reason) => new(null, reason);
}

/// <summary>
/// One component's TLS identity: its certificate and key, and the CA bundle it trusts, all read
/// from <see cref="TlsFiles"/> and re-read when the files change (checked at most once a second,
/// on the next handshake), so a renewed certificate is used without a restart. Connections
/// already open keep the certificate they were made with; they are long-lived HTTP/2 connections,
/// so handshakes (and their cost) are rare.
/// </summary>
public sealed class ComponentTls
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(1);

    private ILogger _log;
    private readonly Lock _lock = new();
    private readonly ConditionalWeakTable<X509Certificate2, StrongBox<CertificateCheck>> _checked = [];
    private Material _material;
    private long _nextCheckTicks;

    private sealed record Material(X509Certificate2 Certificate, X509Certificate2Collection Trust, string Role, string Stamps);

    private ComponentTls(TlsFiles files, Material material, ILogger log)
    {
        Files = files;
        _material = material;
        _log = log;
        _nextCheckTicks = (DateTime.UtcNow + CheckEvery).Ticks;
    }

    public TlsFiles Files { get; }

    /// <summary>Loads the files; a missing or unreadable file, or a certificate without a role, is an error with the reason.</summary>
    public static ComponentTls Load(TlsFiles files, ILogger? log = null) => new(files, Read(files), log ?? NullLogger.Instance);

    /// <summary>
    /// The TLS identity named by --tls-ca/--tls-cert/--tls-key (all three or none: null), whose
    /// certificate must be of one of <paramref name="roles"/>; ArgumentException with the reason otherwise.
    /// </summary>
    public static ComponentTls? FromFlags(string? ca, string? cert, string? key, params string[] roles)
    {
        var files = TlsFiles.FromOptions(ca, cert, key);
        if (files is null)
        {
            return null;
        }
        var tls = Load(files);
        return roles.Length == 0 || roles.Contains(tls.Role)
            ? tls
            : throw new ArgumentException($"{files.CertFile} is a certificate of role {tls.Role}; this component needs role {string.Join(" or ", roles)}");
    }

    /// <summary>Logs renewals and unreadable files from now on.</summary>
    public ComponentTls WithLogger(ILogger log)
    {
        _log = log;
        return this;
    }

    /// <summary>This component's certificate now (a renewed one once its files changed).</summary>
    public X509Certificate2 Certificate => Current().Certificate;

    /// <summary>The role this component's own certificate names.</summary>
    public string Role => Current().Role;

    public X509Certificate2Collection TrustedCas => Current().Trust;

    /// <summary>Re-reads the files now if they changed (normally done on use, at most once a second).</summary>
    public void Refresh()
    {
        lock (_lock)
        {
            _nextCheckTicks = 0;
        }
        _ = Current();
    }

    private Material Current()
    {
        var now = DateTime.UtcNow.Ticks;
        if (now < Volatile.Read(ref _nextCheckTicks))
        {
            return Volatile.Read(ref _material);
        }
        lock (_lock)
        {
            if (now < _nextCheckTicks)
            {
                return _material;
            }
            _nextCheckTicks = now + CheckEvery.Ticks;
            try
            {
                if (Stamps(Files) != _material.Stamps)
                {
                    var fresh = Read(Files);
                    _log.LogInformation("Reloaded TLS certificate {Subject} (role {Role}, valid until {NotAfter:u}) from {CertFile}",
                        fresh.Certificate.Subject, fresh.Role, fresh.Certificate.NotAfter.ToUniversalTime(), Files.CertFile);
                    Volatile.Write(ref _material, fresh);
                }
            }
            catch (Exception error) when (error is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                // Half-replaced files (new key, old certificate): keep the pair we have, look again soon.
                _log.LogWarning("Keeping the current TLS certificate: reading {CertFile} failed: {Reason}", Files.CertFile, error.Message);
            }
            return _material;
        }
    }

    /// <summary>
    /// What the three files hold (a hash of their contents, read through symlinks). Not their
    /// modification times: in a Kubernetes Secret volume the files are symlinks into a `..data`
    /// directory link that the kubelet swaps atomically, and the links' own times never change.
    /// </summary>
    private static string Stamps(TlsFiles files)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var file in new[] { files.CaFile, files.CertFile, files.KeyFile })
        {
            var bytes = File.ReadAllBytes(file);
            hash.AppendData(BitConverter.GetBytes(bytes.Length));
            hash.AppendData(bytes);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static Material Read(TlsFiles files)
    {
        foreach (var file in new[] { files.CaFile, files.CertFile, files.KeyFile })
        {
            if (!File.Exists(file))
            {
                throw new ArgumentException($"TLS file {file} does not exist");
            }
        }
        var stamps = Stamps(files);
        var trust = new X509Certificate2Collection();
        trust.ImportFromPemFile(files.CaFile);
        if (trust.Count == 0)
        {
            throw new ArgumentException($"{files.CaFile} holds no certificate");
        }
        var certificate = X509Certificate2.CreateFromPemFile(files.CertFile, files.KeyFile);
        var role = ComponentRoles.Of(certificate)
            ?? throw new ArgumentException($"{files.CertFile} names no feitian role (a SAN URI {ComponentRoles.UriPrefix}ROLE)");
        return new Material(certificate, trust, role, stamps);
    }

    /// <summary>Whether <paramref name="peer"/> chains to a trusted CA, is valid now and names a role.</summary>
    public CertificateCheck Check(X509Certificate2 peer)
    {
        var trust = TrustedCas;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trust);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationTime = DateTime.Now;
        if (!chain.Build(peer))
        {
            var status = chain.ChainStatus.Select(s => s.Status).Where(s => s != X509ChainStatusFlags.NoError).Distinct();
            return CertificateCheck.Refused($"certificate '{peer.Subject}' is not valid for this cluster's CA ({string.Join(", ", status)})");
        }
        var role = ComponentRoles.Of(peer);
        return role is null
            ? CertificateCheck.Refused($"certificate '{peer.Subject}' names no feitian role")
            : CertificateCheck.Ok(role);
    }

    /// <summary><see cref="Check"/>, remembered per certificate object (one per TLS connection on the server side).</summary>
    public CertificateCheck CheckCached(X509Certificate2 peer) =>
        _checked.GetValue(peer, p => new StrongBox<CertificateCheck>(Check(p))).Value;

    /// <summary>Client side of a channel to a master or chunk server: present our certificate, accept only a server of this cluster.</summary>
    public SslClientAuthenticationOptions ClientOptions(params string[] serverRoles) => new()
    {
        LocalCertificateSelectionCallback = (_, _, _, _, _) => Certificate,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => IsPeerOf(certificate, serverRoles),
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
    };

    /// <summary>Roles that serve gRPC: a client accepts only these at the other end.</summary>
    public static readonly string[] ServerRoles = [ComponentRoles.Master, ComponentRoles.ChunkServer];

    private bool IsPeerOf(X509Certificate? certificate, string[] roles)
    {
        if (certificate is null)
        {
            return false;
        }
        var peer = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var check = Check(peer);
        if (!check.Trusted || !roles.Contains(check.Role))
        {
            _log.LogWarning("Refused a TLS peer: {Reason}", check.Refusal ?? $"role {check.Role} is not one of {string.Join(", ", roles)}");
            return false;
        }
        return true;
    }

    /// <summary>
    /// Kestrel's side: our certificate (re-read when renewed), a client certificate asked for but
    /// checked per call by <see cref="RpcAuthorizationInterceptor"/>, so that a missing or foreign one
    /// gets a clear gRPC status, a log line and a count instead of a bare handshake failure.
    /// </summary>
    public HttpsConnectionAdapterOptions ServerOptions() => new()
    {
        ServerCertificateSelector = (_, _) => Certificate,
        ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.AllowCertificate,
        ClientCertificateValidation = (_, _, _) => true,
        CheckCertificateRevocation = false,
        SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
    };

    /// <summary>For a raw TLS listener (the masters' Raft transport): our certificate, a client certificate of <paramref name="clientRoles"/> required.</summary>
    public SslServerAuthenticationOptions RawServerOptions(params string[] clientRoles) => new()
    {
        ServerCertificateSelectionCallback = (_, _) => Certificate,
        ClientCertificateRequired = true,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => IsPeerOf(certificate, clientRoles),
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
    };
}
