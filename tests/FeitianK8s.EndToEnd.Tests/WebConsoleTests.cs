using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.RegularExpressions;
using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Security;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// The master's web console in a real headless chromium against a real `feitian up` cluster:
/// the page lists every chunk server up; after a chunk server is killed with SIGKILL and
/// declared dead, the page shows it dead and the volume it held a replica of as degraded.
/// Screenshots are kept under the test output directory, artifacts/web-console/. With TLS (the
/// default) the browser goes through the token-protected proxy `feitian up` and `feitian console`
/// run with the admin certificate; the masters serve the console only over HTTPS on their gRPC port
/// to client certificates of the cluster CA with role admin, operator or master.
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
        Assert.Matches(@"^http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{48}$", console);
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
    public async Task Console_api_over_mutual_tls_answers_admin_on_every_master_with_the_cli_json_and_refuses_other_callers()
    {
        using var data = new TempDirectory("console-api");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--masters", "3", "--chunkservers", "3"]);
        await up.RunCliCheckedAsync("volume", "create", "vol-b", "--size", "8MiB");
        var masters = Enumerable.Range(1, 3).Select(i => ServerEndpoints.TryRead(data.Combine($"master-{i}"))
            ?? throw new InvalidOperationException($"master-{i} wrote no endpoints")).ToList();
        var tls = LocalPki.DirectoryOf(data.Path);
        using var admin = CertificateClient(LocalPki.Files(tls, ComponentRoles.Admin));

        // The console is on each master's gRPC port (HTTPS, HTTP/1.1 by ALPN): the leader answers, followers answer with the leader's data.
        var answers = new List<(string Grpc, HttpResponseMessage Response)>();
        foreach (var master in masters)
        {
            answers.Add((master.Grpc, await admin.GetAsync($"{master.Grpc}/api/status?from=test")));
        }
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.Response.StatusCode));
        var leader = Assert.Single(answers, a => !a.Response.Headers.Contains("Feitian-Console-Leader"));
        foreach (var follower in answers.Where(a => a != leader))
        {
            Assert.Equal(leader.Grpc, Assert.Single(follower.Response.Headers.GetValues("Feitian-Console-Leader")));
        }
        var cli = JsonDocument.Parse(await up.RunCliCheckedAsync("status", "--json")).RootElement;
        foreach (var (_, response) in answers)
        {
            var api = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(JsonShape(cli), JsonShape(api));
            Assert.Equal(Addresses(cli, "masters", "address"), Addresses(api, "masters", "address"));
            Assert.Equal(Addresses(cli, "chunkServers", "id"), Addresses(api, "chunkServers", "id"));
            Assert.Equal(3, api.GetProperty("masters").EnumerateArray().Count(m => m.GetProperty("role").GetString() is "leader" or "follower"));
        }
        var followerGrpc = answers.First(a => a != leader).Grpc;
        var index = await admin.GetStringAsync($"{followerGrpc}/");
        Assert.Contains("console.js", index);
        Assert.DoesNotContain("https://", index);
        var volumesCli = JsonDocument.Parse(await up.RunCliCheckedAsync("volume", "ls", "--json")).RootElement;
        Assert.Equal(volumesCli.ToString(), JsonDocument.Parse(await admin.GetStringAsync($"{leader.Grpc}/api/volumes")).RootElement.ToString());
        Assert.Equal(volumesCli.ToString(), JsonDocument.Parse(await admin.GetStringAsync($"{followerGrpc}/api/volumes")).RootElement.ToString());
        var backups = JsonDocument.Parse(await admin.GetStringAsync($"{followerGrpc}/api/backups")).RootElement;
        Assert.False(backups.GetProperty("configured").GetBoolean());
        Assert.Equal(JsonValueKind.Null, backups.GetProperty("target").ValueKind);

        // Refused: no certificate, another CA's, a chunk server's; and the plain HTTP port serves no console.
        using (var anonymous = CertificateClient((X509Certificate2?)null))
        {
            var refused = await anonymous.GetAsync($"{leader.Grpc}/api/status");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("no client certificate", await refused.Content.ReadAsStringAsync());
        }
        using (var otherCa = CertificateAuthority.Create("someone else's CA", TimeSpan.FromDays(1)))
        using (var impostor = otherCa.Issue(ComponentRoles.Admin, "impostor", ["localhost"], [IPAddress.Loopback], TimeSpan.FromDays(1)))
        using (var stranger = CertificateClient(impostor))
        {
            var refused = await stranger.GetAsync($"{followerGrpc}/api/volumes");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Contains("not valid for this cluster's CA", await refused.Content.ReadAsStringAsync());
        }
        using (var chunkServer = CertificateClient(LocalPki.Files(tls, ComponentRoles.ChunkServer)))
        {
            var refused = await chunkServer.GetAsync($"{leader.Grpc}/");
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            Assert.Contains("role chunkserver may not read the web console", await refused.Content.ReadAsStringAsync());
        }
        using var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var leaderHttp = masters.Single(m => m.Grpc == leader.Grpc).Http;
        var plainConsole = await plain.GetAsync($"{leaderHttp}/api/status");
        Assert.Equal(HttpStatusCode.Forbidden, plainConsole.StatusCode);
        Assert.Contains("feitian console", await plainConsole.Content.ReadAsStringAsync());
        // Scrapers and probes keep the plain port; the refusals above are counted there.
        Assert.Equal("ok\n", await plain.GetStringAsync($"{leaderHttp}/healthz"));
        var metrics = await plain.GetStringAsync($"{leaderHttp}/metrics");
        Assert.Contains("feitian_master_rpc_refused_total{reason=\"wrong-role\",method=\"/\",role=\"chunkserver\"} 1", metrics);
        Assert.Contains("feitian_master_rpc_refused_total{reason=\"no-certificate\",method=\"/api/status\",role=\"-\"} 2", metrics);
    }

    [Fact]
    public async Task Feitian_console_needs_its_token_and_pointed_at_a_follower_only_shows_the_leaders_data()
    {
        using var data = new TempDirectory("console-proxy");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--masters", "3", "--chunkservers", "3"]);
        await up.RunCliCheckedAsync("volume", "create", "vol-c", "--size", "8MiB");
        var status = JsonDocument.Parse(await up.RunCliCheckedAsync("status", "--json")).RootElement;
        var follower = status.GetProperty("masters").EnumerateArray().First(m => m.GetProperty("role").GetString() == "follower").GetProperty("address").GetString()!;
        var leader = status.GetProperty("masters").EnumerateArray().Single(m => m.GetProperty("role").GetString() == "leader").GetProperty("address").GetString()!;

        // As through `kubectl port-forward svc/NAME-master`: the proxy knows one master, a follower, and explicit certificate files.
        await using var proxy = await FeitianConsoleProcess.StartAsync(output,
            ["--master", follower, .. LocalPki.Files(LocalPki.DirectoryOf(data.Path), ComponentRoles.Admin).ToArgs()]);
        Assert.Matches(@"^http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{48}$", proxy.Url);
        using (var anonymous = new HttpClient { Timeout = TimeSpan.FromSeconds(30) })
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"{proxy.Address}/api/status")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"{proxy.Address}/?token=0123")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync($"{proxy.Address}/")).StatusCode);
        }

        var (browserLike, consoleBase) = await OpenConsoleAsync(proxy.Url);
        using (browserLike)
        {
            var page = await browserLike.GetAsync(proxy.Url);
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal(new Uri($"{proxy.Address}/"), page.RequestMessage!.RequestUri);
            Assert.Contains("console.js", await page.Content.ReadAsStringAsync());
            var api = JsonDocument.Parse(await browserLike.GetStringAsync($"{consoleBase}api/status")).RootElement;
            Assert.Equal(JsonShape(status), JsonShape(api));
            Assert.Equal(leader, api.GetProperty("masters").EnumerateArray().Single(m => m.GetProperty("role").GetString() == "leader").GetProperty("address").GetString());
            var volumesCli = JsonDocument.Parse(await up.RunCliCheckedAsync("volume", "ls", "--json")).RootElement;
            Assert.Equal(volumesCli.ToString(), JsonDocument.Parse(await browserLike.GetStringAsync($"{consoleBase}api/volumes")).RootElement.ToString());
        }

        // And a real browser at that URL draws the leader's page.
        var drawn = await WaitForPageAsync(new HeadlessChromium(output), proxy.Url, p => p.Volumes.GetValueOrDefault("vol-c") == "healthy");
        Assert.Contains("data-role=\"leader\"", drawn.Dom);
        Assert.Equal(3, drawn.ChunkServers.Count);
    }

    [Fact]
    public async Task Feitian_console_follows_a_new_leader_after_the_leader_master_is_killed()
    {
        using var data = new TempDirectory("console-failover");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--masters", "3", "--chunkservers", "3", "--no-restart"]);
        await up.RunCliCheckedAsync("volume", "create", "vol-d", "--size", "8MiB");
        await using var proxy = await FeitianConsoleProcess.StartAsync(output, ["--data", data.Path]);
        var (browserLike, consoleBase) = await OpenConsoleAsync(proxy.Url);
        using var _ = browserLike;
        var before = await ConsoleLeaderAsync(browserLike, consoleBase);
        var victim = Enumerable.Range(1, 3).Single(i => ServerEndpoints.TryRead(data.Combine($"master-{i}"))?.Grpc == before);
        var pid = up.ServerPid($"master-{victim}") ?? throw new InvalidOperationException($"master-{victim} is not running");
        Process.GetProcessById(pid).Kill();
        var killed = Stopwatch.StartNew();
        output.WriteLine($"killed the leader master-{victim} ({before}, pid {pid}) with SIGKILL");

        // The same URL keeps working: the proxy moves on to a live master, which answers for the new leader.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        string? after = null;
        while (DateTime.UtcNow < deadline && (after is null || after == before))
        {
            await Task.Delay(1000);
            after = await ConsoleLeaderAsync(browserLike, consoleBase);
        }
        Assert.NotNull(after);
        Assert.NotEqual(before, after);
        output.WriteLine($"the console showed the new leader {after} {killed.Elapsed.TotalSeconds:F1} s after the kill");
        var volumes = JsonDocument.Parse(await browserLike.GetStringAsync($"{consoleBase}api/volumes")).RootElement;
        Assert.Equal("vol-d", Assert.Single(volumes.GetProperty("volumes").EnumerateArray()).GetProperty("name").GetString());
    }

    /// <summary>The leader's address in the console's /api/status, or null when it answered otherwise (no leader yet).</summary>
    private async Task<string?> ConsoleLeaderAsync(HttpClient client, string consoleBase)
    {
        using var response = await client.GetAsync($"{consoleBase}api/status");
        output.WriteLine($"console /api/status: {(int)response.StatusCode}");
        if (response.StatusCode != HttpStatusCode.OK)
        {
            return null;
        }
        var masters = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("masters").EnumerateArray();
        return masters.Where(m => m.GetProperty("role").GetString() == "leader").Select(m => m.GetProperty("address").GetString()).FirstOrDefault();
    }

    /// <summary>An HTTPS client presenting <paramref name="certificate"/> (none when null), accepting any server certificate.</summary>
    private static HttpClient CertificateClient(X509Certificate2? certificate) => new(new SocketsHttpHandler
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ClientCertificates = certificate is null ? null : [certificate],
        },
        AllowAutoRedirect = false,
    })
    { Timeout = TimeSpan.FromSeconds(30) };

    private static HttpClient CertificateClient(TlsFiles files) =>
        CertificateClient(X509Certificate2.CreateFromPemFile(files.CertFile, files.KeyFile));

    /// <summary>
    /// A browser-like client of a console proxy URL (with its token): the first visit keeps the token
    /// cookie; returns the client and the proxy's base URL (http://127.0.0.1:PORT/).
    /// </summary>
    private static async Task<(HttpClient Client, string Base)> OpenConsoleAsync(string url)
    {
        var client = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer() }) { Timeout = TimeSpan.FromSeconds(60) };
        (await client.GetAsync(url)).EnsureSuccessStatusCode();
        return (client, new Uri(url).GetLeftPart(UriPartial.Authority) + "/");
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
            var (http, consoleBase) = await OpenConsoleAsync(console);
            using var _ = http;
            var api = JsonDocument.Parse(await http.GetStringAsync($"{consoleBase}api/backups")).RootElement;
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
            while ((failed = await http.GetAsync($"{consoleBase}api/backups")).StatusCode == HttpStatusCode.OK && DateTime.UtcNow < deadline)
            {
                await Task.Delay(1000);
            }
            Assert.Equal(HttpStatusCode.BadGateway, failed.StatusCode);
            var error = JsonDocument.Parse(await failed.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
            Assert.StartsWith($"cannot list backups in {target} at {s3.Endpoint}", error);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"{consoleBase}api/status")).StatusCode);
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
