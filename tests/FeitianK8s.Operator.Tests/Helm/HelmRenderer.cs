using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using FeitianK8s.Operator.Tests.Schema;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests.Helm;

/// <summary>One release to render: its name, namespace, values over the chart's values.yaml, and helm lint --strict's missing-key rule.</summary>
public sealed record HelmRelease(string Name, string Namespace, JsonObject Values, bool Strict = false)
{
    /// <summary>API versions the cluster serves beyond the built-in ones (helm template --api-versions), e.g. monitoring.coreos.com/v1.</summary>
    public IReadOnlyList<string> ApiVersions { get; init; } = [];

    /// <summary>Print the rendered NOTES.txt instead of the manifests.</summary>
    public bool Notes { get; init; }
}

/// <summary>
/// Builds tests/helm-render (Go) once per source version and runs it as `helm template` would run.
/// It builds in GOPATH mode against the Sprig and sigs.k8s.io/yaml sources that Debian's
/// golang-*-dev packages install under /usr/share/gocode (test.sh installs them).
/// </summary>
public static class HelmRenderer
{
    private const string DebianGoPath = "/usr/share/gocode";
    private static readonly SemaphoreSlim BuildLock = new(1, 1);
    private static string? _binary;

    public static string ChartDirectory { get; } = Repo.Path("charts", "feitian");

    /// <summary>Renders the chart; fails the test unless the renderer exits 0.</summary>
    public static async Task<RenderedChart> RenderAsync(ITestOutputHelper output, HelmRelease release, string? chartDirectory = null)
    {
        var result = await RunAsync(output, release, chartDirectory);
        Assert.True(result.Succeeded, $"helm template failed: {result.StandardError.Trim()}");
        return RenderedChart.Parse(result.StandardOutput);
    }

    /// <summary>Runs the renderer and returns its exit code, manifests and error text.</summary>
    public static async Task<ToolResult> RunAsync(ITestOutputHelper output, HelmRelease release, string? chartDirectory = null)
    {
        var binary = await BinaryAsync(output);
        using var work = new TempDirectory("feitian-helm-values");
        var valuesFile = work.Combine("values.json");
        await File.WriteAllTextAsync(valuesFile, release.Values.ToJsonString());
        string[] args = ["-chart", chartDirectory ?? ChartDirectory, "-name", release.Name, "-namespace", release.Namespace, "-f", valuesFile];
        args = [.. args, .. release.ApiVersions.SelectMany(v => new[] { "-api-versions", v }), .. release.Notes ? new[] { "-notes" } : []];
        return await ExternalTool.RunAsync(output, binary, release.Strict ? [.. args, "-strict"] : args, TimeSpan.FromMinutes(1));
    }

    private static async Task<string> BinaryAsync(ITestOutputHelper output)
    {
        await BuildLock.WaitAsync();
        try
        {
            return _binary ??= await BuildAsync(output);
        }
        finally
        {
            BuildLock.Release();
        }
    }

    private static async Task<string> BuildAsync(ITestOutputHelper output)
    {
        var go = ExternalTool.Which("go")
            ?? throw new InvalidOperationException("go is not installed: test.sh installs golang-go (apt-get install golang-go)");
        var sources = Directory.GetFiles(Repo.Path("tests", "helm-render")).Order(StringComparer.Ordinal).ToList();
        var root = Path.Combine(Path.GetTempPath(), "feitian-helm-render");
        var binary = Path.Combine(root, $"helm-render-{SourceHash(sources)}");
        if (File.Exists(binary))
        {
            return binary;
        }
        // GOPATH mode finds a package only inside a GOPATH, so the sources are copied into a throwaway one.
        var gopath = Path.Combine(root, $"gopath-{Guid.NewGuid():N}");
        var package = Path.Combine(gopath, "src", "helmrender");
        Directory.CreateDirectory(package);
        sources.ForEach(f => File.Copy(f, Path.Combine(package, Path.GetFileName(f))));
        var built = $"{binary}.{Guid.NewGuid():N}.tmp";
        try
        {
            var result = await ExternalTool.RunAsync(output, "env",
                ["GO111MODULE=off", $"GOPATH={gopath}:{DebianGoPath}", $"GOCACHE={Path.Combine(root, "go-build")}", "GOFLAGS=", "GOTOOLCHAIN=local", go, "build", "-o", built, "."],
                TimeSpan.FromMinutes(5), package);
            if (!result.Succeeded)
            {
                throw new InvalidOperationException("go build of tests/helm-render failed (test.sh installs golang-go, golang-github-masterminds-sprig-dev and golang-k8s-sigs-yaml-dev): " + result.StandardError.Trim());
            }
            File.Move(built, binary, overwrite: true);
            return binary;
        }
        finally
        {
            Directory.Delete(gopath, recursive: true);
        }
    }

    private static string SourceHash(IEnumerable<string> files)
    {
        var text = string.Concat(files.Select(f => $"{Path.GetFileName(f)}\0{File.ReadAllText(f)}\0"));
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16].ToLowerInvariant();
    }
}
