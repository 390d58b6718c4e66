using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Net.Sockets;
using System.Text.Json;
using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// The web console under the operator without Kubernetes: three real master processes run with
/// exactly the arguments the operator's StatefulSet renders. What Kubernetes would do is done by
/// hand and nothing else: $(POD_NAME) is expanded, each pod gets its own loopback address (its pod
/// IP, so all three use the same ports as pods do), and the pods' stable DNS names resolve to those
/// addresses (the "cluster DNS" here is a text substitution). With TLS flags added (the operator's
/// TLS Secrets are another branch's work), `kubectl port-forward svc/...` is a TCP relay to one pod.
/// </summary>
public sealed class OperatorMasterArgsConsoleTests(ITestOutputHelper output)
{
    private const int Members = 3;

    [Fact]
    public async Task Masters_run_with_the_operators_args_and_a_follower_redirects_to_the_leaders_console()
    {
        var cluster = TestClusters.Minimal();
        // The console and its redirects are plain HTTP either way; TLS as rendered is OperatorTlsEndToEndTests' subject.
        cluster.Spec.Tls.Enabled = false;
        var ports = FreePorts(3);
        (cluster.Spec.Masters.Port, cluster.Spec.Masters.HttpPort, cluster.Spec.Masters.RaftPort) = (ports[0], ports[1], ports[2]);
        var rendered = MasterBuilder.StatefulSet(cluster).Spec.Template.Spec.Containers[0].Args.ToList();
        Assert.Contains("--advertise-http", rendered);

        var dirs = Enumerable.Range(0, Members).Select(_ => new TempDirectory("operator-masters")).ToArray();
        var processes = new List<Process>();
        try
        {
            for (var i = 0; i < Members; i++)
            {
                processes.Add(Start(i, PodArgs(rendered, i, dirs[i].Path)));
            }
            var http = Enumerable.Range(0, Members).Select(i => $"http://{PodIp(i)}:{cluster.Spec.Masters.HttpPort}").ToList();
            using var noRedirect = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(10) };

            // Until the group has elected: one master answers, the other two redirect to it by its advertised name.
            var (leader, answers) = await WaitForLeaderAsync(noRedirect, http);
            for (var i = 0; i < Members; i++)
            {
                if (i == leader)
                {
                    continue;
                }
                Assert.Equal(HttpStatusCode.TemporaryRedirect, answers[i].Status);
                Assert.Equal($"{http[leader]}/api/status", answers[i].Location);
            }

            // A browser at a follower ends on the leader's console page, served from the binary.
            using var browser = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var follower = Enumerable.Range(0, Members).First(i => i != leader);
            using var page = await browser.GetAsync($"{http[follower]}/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal(new Uri($"{http[leader]}/"), page.RequestMessage!.RequestUri);
            Assert.Contains("console.js", await page.Content.ReadAsStringAsync());

            // And the console's status names all three members by their advertised gRPC addresses.
            var status = JsonDocument.Parse(await browser.GetStringAsync($"{http[follower]}/api/status")).RootElement;
            var masters = status.GetProperty("masters").EnumerateArray().ToList();
            Assert.Equal(Members, masters.Count);
            Assert.Single(masters, m => m.GetProperty("role").GetString() == "leader");
            Assert.Equal(Enumerable.Range(0, Members).Select(i => $"http://{PodIp(i)}:{cluster.Spec.Masters.Port}").Order(StringComparer.Ordinal),
                masters.Select(m => m.GetProperty("address").GetString()!).Order(StringComparer.Ordinal));
        }
        finally
        {
            foreach (var process in processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                process.Dispose();
            }
            foreach (var dir in dirs)
            {
                dir.Dispose();
            }
        }
    }

    [Fact]
    public async Task With_tls_flags_a_port_forward_to_the_service_landing_on_a_follower_shows_the_leaders_console()
    {
        var cluster = TestClusters.Minimal();
        var ports = FreePorts(3);
        (cluster.Spec.Masters.Port, cluster.Spec.Masters.HttpPort, cluster.Spec.Masters.RaftPort) = (ports[0], ports[1], ports[2]);
        var rendered = MasterBuilder.StatefulSet(cluster).Spec.Template.Spec.Containers[0].Args.ToList();
        using var pki = new TempDirectory("operator-masters-tls");
        LocalPki.Ensure(pki.Path);
        var dirs = Enumerable.Range(0, Members).Select(_ => new TempDirectory("operator-masters")).ToArray();
        var processes = new List<Process>();
        try
        {
            for (var i = 0; i < Members; i++)
            {
                processes.Add(Start(i, WithTls(PodArgs(rendered, i, dirs[i].Path), pki.Path)));
            }
            var grpc = Enumerable.Range(0, Members).Select(i => $"https://{PodIp(i)}:{cluster.Spec.Masters.Port}").ToList();
            using var admin = AdminClient(LocalPki.Files(pki.Path, ComponentRoles.Admin));
            var leader = await WaitForTlsLeaderAsync(admin, grpc);
            var follower = Enumerable.Range(0, Members).First(i => i != leader);

            // `kubectl port-forward svc/NAME-master 8443:grpc` picked the follower's pod: a TCP relay to its gRPC port.
            await using var forward = new TcpPortForward(new IPEndPoint(IPAddress.Parse(PodIp(follower)), cluster.Spec.Masters.Port));
            using var answer = await admin.GetAsync($"https://127.0.0.1:{forward.Port}/api/status");
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Equal(grpc[leader], Assert.Single(answer.Headers.GetValues("Feitian-Console-Leader")));
            var masters = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement.GetProperty("masters").EnumerateArray().ToList();
            Assert.Equal(grpc[leader], Assert.Single(masters, m => m.GetProperty("role").GetString() == "leader").GetProperty("address").GetString());
            Assert.Equal(Members, masters.Count(m => m.GetProperty("role").GetString() is "leader" or "follower"));
            Assert.Contains("console.js", await admin.GetStringAsync($"https://127.0.0.1:{forward.Port}/"));

            // The HTTP port (Service port `http-metrics`, the ServiceMonitor's) still serves /metrics and /healthz, and no console.
            using var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var http = $"http://{PodIp(follower)}:{cluster.Spec.Masters.HttpPort}";
            Assert.Equal(HttpStatusCode.Forbidden, (await plain.GetAsync($"{http}/api/status")).StatusCode);
            Assert.Contains("feitian_master_", await plain.GetStringAsync($"{http}/metrics"));
            Assert.Equal(HttpStatusCode.OK, (await plain.GetAsync($"{http}/healthz")).StatusCode);
        }
        finally
        {
            foreach (var process in processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                process.Dispose();
            }
            foreach (var dir in dirs)
            {
                dir.Dispose();
            }
        }
    }

    /// <summary>
    /// The pod's args with the master certificate of <paramref name="pki"/> (unless the operator already
    /// renders TLS flags) and its gRPC address advertised as https, as a TLS master's is.
    /// </summary>
    private static List<string> WithTls(List<string> args, string pki)
    {
        var advertise = args.IndexOf("--advertise") + 1;
        if (args[advertise].StartsWith("http://", StringComparison.Ordinal))
        {
            args[advertise] = "https://" + args[advertise]["http://".Length..];
        }
        // The operator renders --tls-* pointing into the pod's Secret volume; here the files are the local PKI's.
        var local = LocalPki.Files(pki, ComponentRoles.Master).ToArgs().ToList();
        for (var i = 0; i < local.Count; i += 2)
        {
            var at = args.IndexOf(local[i]);
            if (at >= 0)
            {
                args[at + 1] = local[i + 1];
            }
            else
            {
                args.AddRange([local[i], local[i + 1]]);
            }
        }
        return args;
    }

    private static HttpClient AdminClient(TlsFiles files) => new(new SocketsHttpHandler
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ClientCertificates = [X509Certificate2.CreateFromPemFile(files.CertFile, files.KeyFile)],
        },
        AllowAutoRedirect = false,
    })
    { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>Waits until every master answers the console with 200 and exactly one answers as the leader (the others forward).</summary>
    private static async Task<int> WaitForTlsLeaderAsync(HttpClient admin, IReadOnlyList<string> masters)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var answers = new List<string>();
            var leaders = new List<int>();
            for (var i = 0; i < masters.Count; i++)
            {
                try
                {
                    using var response = await admin.GetAsync($"{masters[i]}/api/status");
                    answers.Add($"{masters[i]}: {(int)response.StatusCode}");
                    if (response.StatusCode == HttpStatusCode.OK && !response.Headers.Contains("Feitian-Console-Leader"))
                    {
                        leaders.Add(i);
                    }
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        leaders.Add(-1);
                    }
                }
                catch (HttpRequestException e)
                {
                    answers.Add($"{masters[i]}: {e.Message}");
                    leaders.Add(-1);
                }
            }
            if (leaders.Count == 1 && leaders[0] >= 0)
            {
                return leaders[0];
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no single leader with forwarding followers: {string.Join(", ", answers)}");
            }
            await Task.Delay(500);
        }
    }

    /// <summary>Pod i's IP on this machine: a loopback address of its own.</summary>
    private static string PodIp(int i) => $"127.0.10.{i + 1}";

    /// <summary>The rendered args as the kubelet and cluster DNS would make them for pod i.</summary>
    private static List<string> PodArgs(IReadOnlyList<string> rendered, int i, string dataDir)
    {
        var args = rendered.Select(a =>
        {
            var expanded = a.Replace("$(POD_NAME)", $"prod-master-{i}", StringComparison.Ordinal);
            for (var j = 0; j < Members; j++)
            {
                expanded = expanded.Replace($"prod-master-{j}.prod-master.storage.svc", PodIp(j), StringComparison.Ordinal);
            }
            return expanded;
        }).ToList();
        args[args.IndexOf("--listen") + 1] = PodIp(i);
        args[args.IndexOf("--data") + 1] = dataDir;
        Assert.DoesNotContain(args, a => a.Contains(".svc", StringComparison.Ordinal) || a.Contains("$(", StringComparison.Ordinal));
        return args;
    }

    private Process Start(int i, IReadOnlyList<string> args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "FeitianK8s.Master.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        output.WriteLine($"prod-master-{i}: {string.Join(' ', args)}");
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => Log(i, e.Data);
        process.ErrorDataReceived += (_, e) => Log(i, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private void Log(int i, string? line)
    {
        if (line is null)
        {
            return;
        }
        try
        {
            output.WriteLine($"prod-master-{i}: {line}");
        }
        catch (InvalidOperationException)
        {
            // The test already finished.
        }
    }

    private async Task<(int Leader, List<(HttpStatusCode? Status, string? Location)> Answers)> WaitForLeaderAsync(HttpClient http, IReadOnlyList<string> masters)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            var answers = new List<(HttpStatusCode? Status, string? Location)>();
            foreach (var master in masters)
            {
                try
                {
                    using var response = await http.GetAsync($"{master}/api/status");
                    answers.Add((response.StatusCode, response.Headers.Location?.ToString()));
                }
                catch (HttpRequestException)
                {
                    answers.Add((null, null));
                }
            }
            var leaders = Enumerable.Range(0, masters.Count).Where(i => answers[i].Status == HttpStatusCode.OK).ToList();
            if (leaders.Count == 1 && answers.All(a => a.Status is HttpStatusCode.OK or HttpStatusCode.TemporaryRedirect))
            {
                return (leaders[0], answers);
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no single leader with redirecting followers: {string.Join(", ", answers.Select(a => $"{a.Status} {a.Location}"))}");
            }
            await Task.Delay(500);
        }
    }

    /// <summary>Ports free on every pod address (all three pods listen on the same ports, as in Kubernetes).</summary>
    private static int[] FreePorts(int count)
    {
        var ports = new List<int>();
        while (ports.Count < count)
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            if (!ports.Contains(port) && Enumerable.Range(0, Members).All(i => IsFree(PodIp(i), port)))
            {
                ports.Add(port);
            }
        }
        return [.. ports];
    }

    private static bool IsFree(string ip, int port)
    {
        try
        {
            using var probe = new TcpListener(IPAddress.Parse(ip), port);
            probe.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
