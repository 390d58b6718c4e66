using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// The web console under the operator without Kubernetes: three real master processes run with
/// exactly the arguments the operator's StatefulSet renders. What Kubernetes would do is done by
/// hand and nothing else: $(POD_NAME) is expanded, each pod gets its own loopback address (its pod
/// IP, so all three use the same ports as pods do), and the pods' stable DNS names resolve to those
/// addresses (the "cluster DNS" here is a text substitution).
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
