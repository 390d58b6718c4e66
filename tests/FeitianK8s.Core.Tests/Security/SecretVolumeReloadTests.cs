using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using FeitianK8s.Core.Security;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Security;

/// <summary>
/// A renewed certificate arriving through a Kubernetes Secret volume. The files are laid out the way
/// the kubelet's AtomicWriter does it: the data in a timestamped directory, a `..data` symlink to it,
/// and each key a symlink `KEY -> ..data/KEY`; an update writes a new timestamped directory, points a
/// temporary link `..data_tmp` at it and renames that over `..data` (one atomic swap), then removes
/// the old directory. The visible file links themselves never change.
/// </summary>
public sealed class SecretVolumeReloadTests
{
    [Fact]
    public void A_certificate_swapped_in_through_the_kubelets_data_symlink_is_used_without_restart()
    {
        using var pki = new TempDirectory("feitian-pki");
        using var volume = new TempDirectory("feitian-secret-volume");
        using var ca = CertificateAuthority.Create("test CA", TimeSpan.FromDays(30));
        using var first = ca.Issue(ComponentRoles.CsiNode, "first", [], [], TimeSpan.FromDays(1));
        var caPem = CertificateAuthority.CertificatePem(ca.Certificate);
        var oldDir = KubeletWrite(volume.Path, "..2026_12_07_01_00_00.000000001", caPem, first);
        foreach (var key in new[] { "ca.crt", "tls.crt", "tls.key" })
        {
            File.CreateSymbolicLink(Path.Combine(volume.Path, key), Path.Combine("..data", key));
        }
        var files = new TlsFiles(Path.Combine(volume.Path, "ca.crt"), Path.Combine(volume.Path, "tls.crt"), Path.Combine(volume.Path, "tls.key"));
        var tls = ComponentTls.Load(files);
        Assert.Equal(first.SerialNumber, tls.Certificate.SerialNumber);
        var linkTime = File.GetLastWriteTimeUtc(files.CertFile);

        using var renewed = ca.Issue(ComponentRoles.CsiNode, "renewed", [], [], TimeSpan.FromDays(1));
        KubeletWrite(volume.Path, "..2026_12_07_02_00_00.000000002", caPem, renewed);
        Directory.Delete(oldDir, recursive: true);

        // What a stat of the link (not its target) says did not change: only the contents tell.
        Assert.Equal(linkTime, File.GetLastWriteTimeUtc(files.CertFile));
        tls.Refresh();
        Assert.Equal(renewed.SerialNumber, tls.Certificate.SerialNumber);
        Assert.Equal(ComponentRoles.CsiNode, tls.Role);
        Assert.True(tls.Check(renewed).Trusted);
    }

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(string from, string to);

    /// <summary>Writes the data into a new timestamped directory and swaps `..data` to it (returns the new directory).</summary>
    private static string KubeletWrite(string volume, string stamp, string caPem, X509Certificate2 certificate)
    {
        var dir = Path.Combine(volume, stamp);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "ca.crt"), caPem);
        File.WriteAllText(Path.Combine(dir, "tls.crt"), CertificateAuthority.CertificatePem(certificate));
        File.WriteAllText(Path.Combine(dir, "tls.key"), CertificateAuthority.KeyPem(certificate));
        var temp = Path.Combine(volume, "..data_tmp");
        File.CreateSymbolicLink(temp, stamp);
        // rename(2) over the old link, as the kubelet does: the swap is atomic.
        Assert.Equal(0, Rename(temp, Path.Combine(volume, "..data")));
        return dir;
    }
}
