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
}
