using System.Collections.Concurrent;
using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Resources;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tls;

/// <summary>
/// The operator's own certificate for each cluster: the reconciler hands it the Secret NAME-tls-operator
/// (issued by the operator or by cert-manager) and it writes the files under DIR/NAMESPACE/NAME
/// (ca.crt, tls.crt, tls.key), from which one <see cref="ComponentTls"/> per cluster reads them, and
/// re-reads them once they change: a renewal reaches the operator's open channels without a restart.
/// </summary>
public sealed class OperatorCertificates(string directory, ILogger<OperatorCertificates> logger)
{
    private readonly ConcurrentDictionary<string, ComponentTls> _byCluster = new(StringComparer.Ordinal);
    private readonly Lock _write = new();

    /// <summary>A directory of this operator process alone (the Secrets are written there again at every reconcile).</summary>
    public static string FreshDirectory() => Path.Combine(Path.GetTempPath(), $"feitian-operator-tls-{Guid.NewGuid():N}"[..36]);

    public string Directory => directory;

    /// <summary>The operator's identity towards <paramref name="c"/>'s masters; null when TLS is off there or its Secret was not seen yet.</summary>
    public ComponentTls? For(StorageCluster c) =>
        c.Spec.Tls.Enabled ? _byCluster.GetValueOrDefault(Key(c)) : null;

    /// <summary>Writes the Secret's files when they differ from what is there; false when the Secret is not complete yet.</summary>
    public bool Update(StorageCluster c, V1Secret secret)
    {
        var ca = TlsSecretPlanner.Text(secret, TlsSecretPlanner.CaCertKey);
        var cert = TlsSecretPlanner.Text(secret, TlsSecretPlanner.CertKey);
        var key = TlsSecretPlanner.Text(secret, TlsSecretPlanner.KeyKey);
        if (ca is null || cert is null || key is null)
        {
            return false;
        }
        var files = TlsFiles.InDirectory(Path.Combine(directory, c.Metadata.NamespaceProperty, c.Metadata.Name), "tls");
        lock (_write)
        {
            var dir = Path.GetDirectoryName(files.CertFile)!;
            System.IO.Directory.CreateDirectory(dir);
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            var changed = false;
            // Key first, then certificate: a reader keeps its old pair until both match.
            foreach (var (path, text, mode) in new[]
            {
                (files.KeyFile, key, UnixFileMode.UserRead | UnixFileMode.UserWrite),
                (files.CertFile, cert, UnixFileMode.UserRead | UnixFileMode.UserWrite),
                (files.CaFile, ca, UnixFileMode.UserRead | UnixFileMode.UserWrite),
            })
            {
                if (!File.Exists(path) || File.ReadAllText(path) != text)
                {
                    CertificateAuthority.WriteAtomically(path, text, mode);
                    changed = true;
                }
            }
            if (_byCluster.TryGetValue(Key(c), out var tls))
            {
                if (changed)
                {
                    tls.Refresh();
                    logger.LogInformation("Operator certificate for {Namespace}/{Name} renewed: valid until {NotAfter:u}",
                        c.Metadata.NamespaceProperty, c.Metadata.Name, tls.Certificate.NotAfter.ToUniversalTime());
                }
                return true;
            }
            var loaded = ComponentTls.Load(files, logger);
            if (loaded.Role != ComponentRoles.Operator)
            {
                throw new InvalidOperationException($"secret {secret.Metadata.Name} holds a certificate of role {loaded.Role}, not {ComponentRoles.Operator}");
            }
            _byCluster[Key(c)] = loaded;
            logger.LogInformation("Operator certificate for {Namespace}/{Name} loaded from secret {Secret}", c.Metadata.NamespaceProperty, c.Metadata.Name, secret.Metadata.Name);
            return true;
        }
    }

    private static string Key(StorageCluster c) => $"{c.Metadata.NamespaceProperty}/{c.Metadata.Name}";
}
