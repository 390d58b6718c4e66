using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Backup;
using FeitianK8s.Master.Hosting;
using FeitianK8s.Master.Web;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// The console's backup listing (/api/backups) without a real object store: the master's
/// --backup-* options, the "no target" answer, and an object store that refuses connections
/// (a closed port on 127.0.0.1) giving an error, cached, instead of an exception.
/// The listing against a real s3rver is in the end-to-end WebConsoleTests.
/// </summary>
public sealed class ConsoleBackupsTests
{
    [Fact]
    public void Backup_options_parse_together_and_bad_ones_are_refused_with_the_reason()
    {
        var options = CommandLine.Parse(["--data", "/tmp/m", "--backup-target", "s3://backups/cluster-a", "--backup-endpoint", "http://127.0.0.1:9000", "--backup-region", "eu-1"]);
        Assert.NotNull(options.BackupTarget);
        Assert.Equal(new BackupTarget("backups", "cluster-a/"), options.BackupTarget.Target);
        Assert.Equal(new BackupStoreOptions("http://127.0.0.1:9000", "eu-1"), options.BackupTarget.Store);
        Assert.Null(CommandLine.Parse(["--data", "/tmp/m"]).BackupTarget);
        Assert.Equal(BackupStoreOptions.DefaultRegion,
            CommandLine.Parse(["--data", "/tmp/m", "--backup-target", "s3://backups", "--backup-endpoint", "http://s3:9000"]).BackupTarget!.Store.Region);

        var alone = Assert.Throws<ArgumentException>(() => CommandLine.Parse(["--data", "/tmp/m", "--backup-target", "s3://backups"]));
        Assert.Contains("--backup-endpoint", alone.Message);
        var bucket = Assert.Throws<ArgumentException>(() => CommandLine.Parse(["--data", "/tmp/m", "--backup-target", "s3://Bad_Bucket", "--backup-endpoint", "http://s3:9000"]));
        Assert.Contains("not an S3 bucket name", bucket.Message);
        var endpoint = Assert.Throws<ArgumentException>(() => CommandLine.Parse(["--data", "/tmp/m", "--backup-target", "s3://backups", "--backup-endpoint", "s3.example.com"]));
        Assert.Contains("not an http(s) URL", endpoint.Message);
    }

    [Fact]
    public async Task Without_a_target_the_listing_is_empty_and_says_no_target_is_configured()
    {
        using var backups = new ConsoleBackups(null, TimeProvider.System, NullLogger<ConsoleBackups>.Instance);
        var listing = await backups.ListAsync(CancellationToken.None);
        Assert.Null(listing.Error);
        Assert.NotNull(listing.View);
        Assert.False(listing.View.Configured);
        Assert.Null(listing.View.Target);
        Assert.Empty(listing.View.Backups);
    }

    [Fact]
    public async Task An_unreachable_object_store_gives_a_clear_error_kept_for_the_cache_period()
    {
        Environment.SetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable, "console-test");
        Environment.SetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable, "console-test");
        var endpoint = $"http://127.0.0.1:{ClosedPort()}";
        var clock = new ManualClock();
        using var backups = new ConsoleBackups(ConsoleBackupTarget.FromOptions("s3://backups/a", endpoint, null), clock, NullLogger<ConsoleBackups>.Instance);

        var first = await backups.ListAsync(CancellationToken.None);
        Assert.Null(first.View);
        Assert.StartsWith($"cannot list backups in s3://backups/a at {endpoint}", first.Error);
        Assert.DoesNotContain("console-test", first.Error);
        // Within the cache period the same answer is served without asking the store again.
        Assert.Same(first, await backups.ListAsync(CancellationToken.None));
        clock.Advance(ConsoleBackups.CacheFor + TimeSpan.FromSeconds(1));
        var later = await backups.ListAsync(CancellationToken.None);
        Assert.NotSame(first, later);
        Assert.NotNull(later.Error);
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
