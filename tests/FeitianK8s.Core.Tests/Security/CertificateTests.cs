using System.Net;
using System.Security.Cryptography.X509Certificates;
using FeitianK8s.Core.Security;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Security;

public sealed class CertificateTests
{
    [Fact]
    public void A_certificate_names_its_role_and_is_trusted_only_by_its_own_CA()
    {
        using var dir = new TempDirectory("feitian-pki");
        LocalPki.Ensure(dir.Path);
        var master = ComponentTls.Load(LocalPki.Files(dir.Path, ComponentRoles.Master));
        var chunk = ComponentTls.Load(LocalPki.Files(dir.Path, ComponentRoles.ChunkServer));
        Assert.Equal(ComponentRoles.Master, master.Role);
        Assert.Equal(CertificateCheck.Ok(ComponentRoles.ChunkServer), master.Check(chunk.Certificate));

        using var other = CertificateAuthority.Create("other", TimeSpan.FromDays(1));
        using var stranger = other.Issue(ComponentRoles.Master, "stranger", ["localhost"], [IPAddress.Loopback], TimeSpan.FromDays(1));
        Assert.Equal(ComponentRoles.Master, ComponentRoles.Of(stranger));
        var check = master.Check(stranger);
        Assert.False(check.Trusted);
        Assert.Null(check.Role);

        // Signed by our CA but expired: refused too.
        using var ca = CertificateAuthority.Load(Path.Combine(dir.Path, "ca.crt"), Path.Combine(dir.Path, "ca.key"));
        using var expired = ca.Issue(ComponentRoles.Admin, "old", [], [], TimeSpan.FromMinutes(1), DateTimeOffset.UtcNow.AddDays(-2));
        Assert.False(master.Check(expired).Trusted);
    }

    [Fact]
    public void Files_without_a_role_or_missing_are_clear_errors()
    {
        using var dir = new TempDirectory("feitian-pki");
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => ComponentTls.Load(LocalPki.Files(dir.Path, ComponentRoles.Admin))).Message);
        Assert.Contains("go together", Assert.Throws<ArgumentException>(() => ComponentTls.FromFlags("a", null, null)).Message);
        Assert.Null(ComponentTls.FromFlags(null, null, null));
        LocalPki.Ensure(dir.Path);
        var admin = LocalPki.Files(dir.Path, ComponentRoles.Admin);
        Assert.Contains("needs role master", Assert.Throws<ArgumentException>(() => ComponentTls.FromFlags(admin.CaFile, admin.CertFile, admin.KeyFile, ComponentRoles.Master)).Message);
    }

    [Fact]
    public void Ensure_keeps_valid_certificates_and_a_reissued_one_is_picked_up_from_the_files()
    {
        using var dir = new TempDirectory("feitian-pki");
        LocalPki.Ensure(dir.Path);
        var files = LocalPki.Files(dir.Path, ComponentRoles.ChunkServer);
        var first = File.ReadAllText(files.CertFile);
        LocalPki.Ensure(dir.Path);
        Assert.Equal(first, File.ReadAllText(files.CertFile));

        var tls = ComponentTls.Load(files);
        var before = tls.Certificate.SerialNumber;
        using var renewed = LocalPki.Reissue(dir.Path, ComponentRoles.ChunkServer);
        tls.Refresh();
        Assert.NotEqual(before, tls.Certificate.SerialNumber);
        Assert.Equal(renewed.SerialNumber, tls.Certificate.SerialNumber);

        // A torn pair (new key, old certificate) keeps the pair in use.
        using var another = LocalPki.Reissue(Path.Combine(dir.Path), ComponentRoles.Admin);
        File.Copy(LocalPki.Files(dir.Path, ComponentRoles.Admin).KeyFile, files.KeyFile, overwrite: true);
        tls.Refresh();
        Assert.Equal(renewed.SerialNumber, tls.Certificate.SerialNumber);
    }

    [Fact]
    public void A_certificate_due_for_renewal_is_renewed_and_a_brought_CA_without_its_key_is_used_as_is()
    {
        using var dir = new TempDirectory("feitian-pki");
        LocalPki.Ensure(dir.Path);
        using var ca = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(dir.Path, "ca.crt"));
        var files = LocalPki.Files(dir.Path, ComponentRoles.Master);
        Assert.False(LocalPki.DueForRenewal(files, ca));
        Assert.True(LocalPki.DueForRenewal(files, ca, DateTimeOffset.Now.AddDays(300)));

        File.Delete(Path.Combine(dir.Path, "ca.key"));
        LocalPki.Ensure(dir.Path);
        File.Delete(files.CertFile);
        Assert.Contains("no", Assert.Throws<InvalidOperationException>(() => LocalPki.Ensure(dir.Path)).Message);
    }
}
