using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// The master's web console in a real headless chromium against a real `feitian up` cluster:
/// the page lists every chunk server up; after a chunk server is killed with SIGKILL and
/// declared dead, the page shows it dead and the volume it held a replica of as degraded.
/// Screenshots are kept under the test output directory, artifacts/web-console/.
/// </summary>
public sealed partial class WebConsoleTests(ITestOutputHelper output)
{
    private static readonly TimeSpan PageWait = TimeSpan.FromSeconds(120);

    public static string ArtifactDirectory => Path.Combine(AppContext.BaseDirectory, "artifacts", "web-console");

    [Fact]
    public async Task Console_shows_chunk_servers_up_then_a_killed_one_dead_and_its_volume_degraded()
    {
        using var data = new TempDirectory("console");
        // Three chunk servers on three racks: a killed one's replicas have nowhere to go, so the volume stays degraded.
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path,
            ["--chunkservers", "3", "--racks", "3", "--dead-after", "3", "--no-restart"]);
        var console = up.ConsoleUrl ?? throw new InvalidOperationException("feitian up printed no `console: URL` line");
        Assert.Matches(@"^http://127\.0\.0\.1:\d+/$", console);
        await up.RunCliCheckedAsync("volume", "create", "vol-a", "--size", "16MiB");
        await up.RunCliCheckedAsync("snapshot", "create", "vol-a", "--name", "snap-a");
        var browser = new HeadlessChromium(output);

        var healthy = await WaitForPageAsync(browser, console, page =>
            page.ChunkServers.Count == 3 && page.ChunkServers.Values.All(s => s == "up") && page.Volumes.GetValueOrDefault("vol-a") == "healthy");
        Assert.Contains("data-role=\"leader\"", healthy.Dom);
        Assert.Contains("snap-a", healthy.Dom);
        Assert.Equal(3, healthy.Racks);
        await browser.ScreenshotAsync(console, Path.Combine(ArtifactDirectory, "healthy.png"));

        var status = JsonDocument.Parse(await up.RunCliCheckedAsync("status", "--json")).RootElement;
        var victim = status.GetProperty("chunkServers").EnumerateArray().First(s => s.GetProperty("node").GetString() == "node-1").GetProperty("id").GetString()!;
        var pid = up.ServerPid("chunkserver-1") ?? throw new InvalidOperationException("chunkserver-1 is not running");
        Process.GetProcessById(pid).Kill();
        output.WriteLine($"killed chunk server {victim} (pid {pid}) with SIGKILL");

        // The cluster badge turns once the master counts the dead server's chunks under-replicated (its next rebuild pass).
        var degraded = await WaitForPageAsync(browser, console, page =>
            page.ChunkServers.GetValueOrDefault(victim) == "dead" && page.Volumes.GetValueOrDefault("vol-a") == "degraded"
            && page.Dom.Contains("data-healthy=\"false\"", StringComparison.Ordinal));
        Assert.Equal(2, degraded.ChunkServers.Values.Count(s => s == "up"));
        Assert.Contains(">degraded<", degraded.Dom);
        var screenshot = Path.Combine(ArtifactDirectory, "chunk-server-dead.png");
        await browser.ScreenshotAsync(console, screenshot);
        AssertPng(screenshot);
        output.WriteLine($"screenshots in {ArtifactDirectory}");
    }

    [Fact]
    public async Task Console_api_returns_the_documents_of_the_cli_json_and_followers_redirect_to_the_leader()
    {
        using var data = new TempDirectory("console-api");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--masters", "3", "--chunkservers", "3"]);
        await up.RunCliCheckedAsync("volume", "create", "vol-b", "--size", "8MiB");
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

        var masters = Enumerable.Range(1, 3).Select(i => ServerEndpoints.TryRead(data.Combine($"master-{i}"))?.Http
            ?? throw new InvalidOperationException($"master-{i} wrote no endpoints")).ToList();
        var answers = new List<(string Http, HttpResponseMessage Response)>();
        foreach (var master in masters)
        {
            answers.Add((master, await http.GetAsync($"{master}/api/status?from=test")));
        }
        var leader = Assert.Single(answers, a => a.Response.StatusCode == HttpStatusCode.OK);
        foreach (var follower in answers.Where(a => a != leader))
        {
            Assert.Equal(HttpStatusCode.TemporaryRedirect, follower.Response.StatusCode);
            Assert.Equal($"{leader.Http}/api/status?from=test", follower.Response.Headers.Location?.ToString());
        }
        // The page itself redirects too, and the leader serves it from the binary.
        var page = await http.GetAsync($"{answers.First(a => a != leader).Http}/");
        Assert.Equal(HttpStatusCode.TemporaryRedirect, page.StatusCode);
        var index = await http.GetStringAsync($"{leader.Http}/");
        Assert.Contains("console.js", index);
        Assert.DoesNotContain("https://", index);

        var api = JsonDocument.Parse(await leader.Response.Content.ReadAsStringAsync()).RootElement;
        var cli = JsonDocument.Parse(await up.RunCliCheckedAsync("status", "--json")).RootElement;
        Assert.Equal(JsonShape(cli), JsonShape(api));
        Assert.Equal(Addresses(cli, "masters", "address"), Addresses(api, "masters", "address"));
        Assert.Equal(Addresses(cli, "chunkServers", "id"), Addresses(api, "chunkServers", "id"));
        Assert.Equal(3, api.GetProperty("masters").EnumerateArray().Count(m => m.GetProperty("role").GetString() is "leader" or "follower"));

        var volumesApi = JsonDocument.Parse(await http.GetStringAsync($"{leader.Http}/api/volumes")).RootElement;
        var volumesCli = JsonDocument.Parse(await up.RunCliCheckedAsync("volume", "ls", "--json")).RootElement;
        Assert.Equal(volumesCli.ToString(), volumesApi.ToString());
        Assert.Equal("healthy", volumesApi.GetProperty("volumes")[0].GetProperty("health").GetProperty("state").GetString());

        // Without --backup-target: an empty list that says so; followers redirect this endpoint too.
        var backups = JsonDocument.Parse(await http.GetStringAsync($"{leader.Http}/api/backups")).RootElement;
        Assert.False(backups.GetProperty("configured").GetBoolean());
        Assert.Equal(JsonValueKind.Null, backups.GetProperty("target").ValueKind);
        Assert.Empty(backups.GetProperty("backups").EnumerateArray());
        var redirected = await http.GetAsync($"{answers.First(a => a != leader).Http}/api/backups");
        Assert.Equal(HttpStatusCode.TemporaryRedirect, redirected.StatusCode);
        Assert.Equal($"{leader.Http}/api/backups", redirected.Headers.Location?.ToString());
    }

    [Fact]
    public async Task Console_lists_the_backups_of_its_target_as_backup_ls_does_and_answers_502_once_the_object_store_is_gone()
    {
        // As in BackupTests: `feitian up` (its masters) and the CLI read the s3rver credentials from the environment.
        Environment.SetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable, S3rverProcess.AccessKey);
        Environment.SetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable, S3rverProcess.SecretKey);
        var s3 = await S3rverProcess.StartAsync(output);
        var s3Stopped = false;
        try
        {
            using var data = new TempDirectory("console-backups");
            var target = $"s3://{s3.Bucket}/console";
            string[] targetArgs = ["--target", target, "--endpoint", s3.Endpoint];
            await using var up = await FeitianUpProcess.StartAsync(output, data.Path,
                ["--chunkservers", "3", "--racks", "3", "--backup-target", target, "--backup-endpoint", s3.Endpoint]);
            var console = up.ConsoleUrl ?? throw new InvalidOperationException("feitian up printed no `console: URL` line");
            await up.RunCliCheckedAsync("volume", "create", "vol-a", "--size", "8MiB");
            await up.RunCliCheckedAsync("volume", "create", "vol-b", "--size", "8MiB");
            await up.RunCliCheckedAsync("snapshot", "create", "vol-a", "--name", "snap-a");
            var created = JsonDocument.Parse(await up.RunCliCheckedAsync(["backup", "create", "snap-a", .. targetArgs, "--json"])).RootElement;
            var id = created.GetProperty("id").GetString()!;

            // The API's list is the CLI's, byte for byte (one builder), plus where it comes from.
            var cli = JsonDocument.Parse(await up.RunCliCheckedAsync(["backup", "ls", .. targetArgs, "--json"])).RootElement;
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
            var api = JsonDocument.Parse(await http.GetStringAsync($"{console}api/backups")).RootElement;
            Assert.Equal(cli.GetProperty("backups").GetRawText(), api.GetProperty("backups").GetRawText());
            Assert.Equal(id, Assert.Single(api.GetProperty("backups").EnumerateArray()).GetProperty("id").GetString());
            Assert.True(api.GetProperty("configured").GetBoolean());
            Assert.Equal(target, api.GetProperty("target").GetString());

            var browser = new HeadlessChromium(output);
            var page = await WaitForPageAsync(browser, console, p => p.Dom.Contains($"<tr class=\"backup\" data-id=\"{id}\" data-volume=\"vol-a\">", StringComparison.Ordinal));
            Assert.Contains("<td class=\"backups\" data-count=\"1\"", page.Dom);
            Assert.Contains("<td class=\"backups\" data-count=\"0\">-</td>", page.Dom);
            Assert.Contains($"1 backup in {target}", page.Dom);
            await browser.ScreenshotAsync(console, Path.Combine(ArtifactDirectory, "backups.png"), height: 1800);

            // The object store goes away: once the cached list expires the API answers 502 with the reason, the master keeps serving.
            await s3.DisposeAsync();
            s3Stopped = true;
            var deadline = DateTime.UtcNow + PageWait;
            HttpResponseMessage failed;
            while ((failed = await http.GetAsync($"{console}api/backups")).StatusCode == HttpStatusCode.OK && DateTime.UtcNow < deadline)
            {
                await Task.Delay(1000);
            }
            Assert.Equal(HttpStatusCode.BadGateway, failed.StatusCode);
            var error = JsonDocument.Parse(await failed.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
            Assert.StartsWith($"cannot list backups in {target} at {s3.Endpoint}", error);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"{console}api/status")).StatusCode);
            var broken = await WaitForPageAsync(browser, console, p => p.Dom.Contains("data-configured=\"error\"", StringComparison.Ordinal));
            Assert.Contains("cannot list backups in", broken.Dom);
            Assert.Equal("healthy", broken.Volumes["vol-a"]);
        }
        finally
        {
            if (!s3Stopped)
            {
                await s3.DisposeAsync();
            }
        }
    }

    private async Task<ConsolePage> WaitForPageAsync(HeadlessChromium browser, string url, Func<ConsolePage, bool> done)
    {
        var deadline = DateTime.UtcNow + PageWait;
        ConsolePage? last = null;
        while (DateTime.UtcNow < deadline)
        {
            last = ConsolePage.Parse(await browser.DumpDomAsync(url));
            output.WriteLine($"page: chunk servers {string.Join(", ", last.ChunkServers.Select(s => $"{s.Key}={s.Value}"))}; volumes {string.Join(", ", last.Volumes.Select(v => $"{v.Key}={v.Value}"))}");
            if (done(last))
            {
                return last;
            }
            await Task.Delay(1000);
        }
        throw new TimeoutException($"the console did not show the expected state within {PageWait}; last DOM: {last?.Dom}");
    }

    private static void AssertPng(string path)
    {
        var header = File.ReadAllBytes(path).Take(8).ToArray();
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, header);
        Assert.True(new FileInfo(path).Length > 10_000, $"{path} is suspiciously small");
    }

    /// <summary>Every property path of a JSON document (values left out: they move between two reads).</summary>
    private static SortedSet<string> JsonShape(JsonElement element, string path = "$")
    {
        var paths = new SortedSet<string>(StringComparer.Ordinal) { path };
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    paths.UnionWith(JsonShape(property.Value, $"{path}.{property.Name}"));
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    paths.UnionWith(JsonShape(item, $"{path}[]"));
                }
                break;
        }
        return paths;
    }

    private static List<string> Addresses(JsonElement root, string array, string field) =>
        root.GetProperty(array).EnumerateArray().Select(e => e.GetProperty(field).GetString()!).ToList();

    /// <summary>What the console's DOM shows: chunk server id → state, volume → health, rack count.</summary>
    private sealed partial record ConsolePage(string Dom, Dictionary<string, string> ChunkServers, Dictionary<string, string> Volumes, int Racks)
    {
        public static ConsolePage Parse(string dom) => new(dom,
            ChunkServerElement().Matches(dom).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value),
            VolumeElement().Matches(dom).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value),
            RackElement().Matches(dom).Count);

        [GeneratedRegex("""<div class="chunkserver" data-id="([^"]+)" data-state="([^"]+)">""")]
        private static partial Regex ChunkServerElement();

        [GeneratedRegex("""<tr class="volume" data-name="([^"]+)" data-health="([^"]+)">""")]
        private static partial Regex VolumeElement();

        [GeneratedRegex("""<div class="rack" data-rack="[^"]+">""")]
        private static partial Regex RackElement();
    }
}
