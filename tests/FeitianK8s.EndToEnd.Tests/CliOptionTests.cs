using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Every command refuses an option it does not know (exit 2, one line with a hint) instead of
/// silently ignoring a typo; `up` in particular must not start a cluster.
/// </summary>
public sealed class CliOptionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("up", "--bogus", "7")]
    [InlineData("status", "--bogus")]
    [InlineData("status", "--jsn")]
    [InlineData("fs", "ls", "/", "--recursive-typo")]
    [InlineData("volume", "ls", "--bogus")]
    [InlineData("volume", "create", "v", "--size", "4MiB", "--replica", "2")]
    public async Task Unknown_options_are_refused_with_exit_code_2_and_a_hint(params string[] arguments)
    {
        using var data = new TempDirectory("cli-options");
        var result = await FeitianUpProcess.RunCliAsync(output, data.Path, arguments);

        Assert.Equal(2, result.ExitCode);
        var stderr = result.StandardError.Trim();
        Assert.DoesNotContain('\n', stderr);
        Assert.Contains("Unknown option", stderr);
        Assert.Contains("--help", stderr);
        // Nothing was started or created: `up` would have written its cluster file.
        Assert.Empty(Directory.EnumerateFileSystemEntries(data.Path));
    }

    [Theory]
    [InlineData("--and-endpoint", "--backup-target", "s3://backups")]
    [InlineData("--and-endpoint", "--backup-endpoint", "http://127.0.0.1:9000")]
    [InlineData("not an S3 bucket name", "--backup-target", "s3://Bad_Bucket", "--backup-endpoint", "http://127.0.0.1:9000")]
    [InlineData("not an http(s) URL", "--backup-target", "s3://backups", "--backup-endpoint", "127.0.0.1:9000")]
    public async Task Up_refuses_incomplete_or_malformed_console_backup_flags_before_starting_anything(string message, params string[] arguments)
    {
        using var data = new TempDirectory("cli-backup-flags");
        var result = await FeitianUpProcess.RunCliAsync(output, data.Path, ["up", .. arguments]);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(message == "--and-endpoint" ? "--backup-target s3://BUCKET[/PREFIX] and --backup-endpoint URL go together" : message, result.StandardError);
        Assert.Empty(Directory.EnumerateFileSystemEntries(data.Path));
    }

    [Theory]
    [InlineData(1, "unauthenticated on every master's HTTP port", "--insecure", "--master", "http://127.0.0.1:9")]
    [InlineData(1, "the console needs this client's certificate", "--master", "https://127.0.0.1:9")]
    [InlineData(1, "is not https://HOST:PORT", "--master", "http://127.0.0.1:9", "--with-tls")]
    [InlineData(2, "--port must be a TCP port", "--port", "70000", "--master", "https://127.0.0.1:9")]
    public async Task Console_refuses_what_cannot_reach_a_tls_console_with_one_line_and_listens_nowhere(int exitCode, string message, params string[] arguments)
    {
        using var data = new TempDirectory("cli-console");
        string[] tls = [];
        if (arguments.Contains("--with-tls"))
        {
            // Real certificate files, so the refusal is about the address alone.
            var dir = Path.Combine(data.Path, "pki");
            FeitianK8s.Core.Security.LocalPki.Ensure(dir);
            tls = [.. FeitianK8s.Core.Security.LocalPki.Files(dir, FeitianK8s.Core.Security.ComponentRoles.Admin).ToArgs()];
        }
        var result = await FeitianUpProcess.RunCliAsync(output, data.Path, ["console", .. arguments.Where(a => a != "--with-tls"), .. tls]);

        Assert.Equal(exitCode, result.ExitCode);
        Assert.Contains(message, result.StandardError);
        Assert.DoesNotContain('\n', result.StandardError.Trim());
        Assert.DoesNotContain("console: ", result.StandardOutput);
    }
}
