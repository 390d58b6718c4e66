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
}
