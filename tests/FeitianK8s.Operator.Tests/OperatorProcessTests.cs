using System.Diagnostics;
using System.Net.Sockets;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests;

/// <summary>The operator executable: command line, start-up failures, kubeconfig (out-of-cluster) against a FAKE API server.</summary>
public sealed class OperatorProcessTests(ITestOutputHelper output)
{
    private static readonly string OperatorDll = Path.Combine(AppContext.BaseDirectory, "FeitianK8s.Operator.dll");

    private async Task<(int Code, string Stdout, string Stderr, Process? Running)> RunAsync(string[] args, TimeSpan wait, bool keepRunning = false,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            psi.Environment[name] = value;
        }
        psi.ArgumentList.Add(OperatorDll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(wait);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException) when (keepRunning)
        {
            return (-1, "", "", p);
        }
        output.WriteLine(await stdout);
        output.WriteLine(await stderr);
        return (p.ExitCode, await stdout, await stderr, null);
    }

    [Fact]
    public async Task Unknown_arguments_exit_2_with_usage()
    {
        var (code, _, stderr, _) = await RunAsync(["--bogus"], TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains("unknown argument '--bogus'", stderr);
        Assert.Contains("--kubeconfig", stderr);
    }

    [Fact]
    public async Task A_missing_kubeconfig_exits_1_with_the_reason()
    {
        var (code, stdout, stderr, _) = await RunAsync(["--kubeconfig", "/nonexistent/kubeconfig", "--http-port", "0"], TimeSpan.FromSeconds(60));
        Assert.Equal(1, code);
        Assert.Contains("failed to start", stdout + stderr);
    }

    private static async Task WriteKubeconfigAsync(string path, FakeKubeApiServer api) =>
        await File.WriteAllTextAsync(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
              - name: fake
                cluster:
                  server: {api.Url}
            users:
              - name: tester
                user:
                  token: not-a-secret
            contexts:
              - name: fake
                context: {"{"}cluster: fake, user: tester{"}"}
            current-context: fake
            """);

    [Fact]
    public async Task Out_of_cluster_with_a_kubeconfig_it_reconciles_and_stops_cleanly_on_sigterm()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        using var dir = new TempDirectory("feitian-operator");
        var kubeconfig = dir.Combine("kubeconfig");
        await WriteKubeconfigAsync(kubeconfig, api);
        await VerifyReconcilesAndStopsAsync(api, ["--kubeconfig", kubeconfig], null);
    }

    /// <summary>
    /// Issue 15: out of a cluster, without --kubeconfig, the operator reads $KUBECONFIG (as kubectl
    /// does; of a list, the first file that exists). HOME points at an empty dir, so
    /// ~/.kube/config cannot be what it used, and no in-cluster variables are set.
    /// </summary>
    [Fact]
    public async Task Out_of_cluster_without_flag_it_connects_through_the_KUBECONFIG_variable()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        using var dir = new TempDirectory("feitian-operator");
        var kubeconfig = dir.Combine("fake-kubeconfig");
        await WriteKubeconfigAsync(kubeconfig, api);
        var home = dir.Combine("empty-home");
        Directory.CreateDirectory(home);
        Assert.False(File.Exists(Path.Combine(home, ".kube", "config")));
        var environment = new Dictionary<string, string?>
        {
            ["KUBECONFIG"] = $"{dir.Combine("missing-kubeconfig")}:{kubeconfig}",
            ["HOME"] = home,
            ["KUBERNETES_SERVICE_HOST"] = null,
            ["KUBERNETES_SERVICE_PORT"] = null,
        };
        await VerifyReconcilesAndStopsAsync(api, [], environment);
    }

    private async Task VerifyReconcilesAndStopsAsync(FakeKubeApiServer api, string[] connection, IReadOnlyDictionary<string, string?>? environment)
    {
        var manifest = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(k8s.KubernetesJson.Serialize(TestClusters.Minimal("prod", "storage")))!;
        manifest["metadata"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "prod" };
        manifest.Remove("status");
        api.Create("feitian.io/v1alpha1/storageclusters", "storage", manifest);

        var (_, _, _, process) = await RunAsync([.. connection, "--http-port", "0", "--listen", "127.0.0.1", "--leader-elect", "false",
            "--master-address", "127.0.0.1:1"], TimeSpan.FromSeconds(1), keepRunning: true, environment);
        Assert.NotNull(process);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (api.Get("apps/v1/statefulsets", "storage", "prod-master") is null)
            {
                Assert.True(DateTime.UtcNow < deadline, "the operator process created no statefulset");
                Assert.False(process.HasExited, "the operator process exited");
                await Task.Delay(100);
            }
            Process.Start("kill", ["-TERM", process.Id.ToString()])!.WaitForExit();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(cts.Token);
            Assert.Equal(0, process.ExitCode);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
            process.Dispose();
        }
    }

    [Fact]
    public async Task Random_bytes_on_the_metrics_port_do_not_stop_the_operator()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        await using var host = new OperatorHost(new OperatorOptions { HttpPort = 0, Listen = "127.0.0.1", LeaderElect = false, MasterAddress = "127.0.0.1:1" },
            new k8s.KubernetesClientConfiguration { Host = api.Url }, logs);
        await host.StartAsync();
        for (var i = 0; i < 5; i++)
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync("127.0.0.1", host.HttpPort);
            var junk = new byte[4096];
            Random.Shared.NextBytes(junk);
            try
            {
                await tcp.GetStream().WriteAsync(junk);
            }
            catch (IOException)
            {
                // The server may close the connection mid-write: that is the expected answer to junk.
            }
        }
        using var http = new HttpClient();
        Assert.Equal("ok\n", await http.GetStringAsync($"http://127.0.0.1:{host.HttpPort}/healthz"));
        Assert.False(host.Completion.IsCompleted);
    }
}
