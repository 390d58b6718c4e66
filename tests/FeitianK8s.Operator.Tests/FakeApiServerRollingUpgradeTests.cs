using System.Text.Json.Nodes;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Testing;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Rolling upgrade of chunk servers: the operator against a FAKE Kubernetes API server, asking a
/// REAL master (a local cluster of master and chunk-server processes) whether every chunk is
/// fully replicated. The test plays the DaemonSet controller and kubelet: a deleted chunk-server
/// pod comes back from the DaemonSet's current template and turns ready a little later.
/// </summary>
public sealed class FakeApiServerRollingUpgradeTests(ITestOutputHelper output)
{
    private const string Ns = "storage";
    private const string Pods = "v1/pods";

    [Fact]
    public async Task Chunk_servers_are_replaced_one_at_a_time_while_the_real_master_reports_full_replication()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output);
        await using var cluster = await TestCluster.StartAsync(logs, chunkServers: 3, racks: 3);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        foreach (var node in TestClusters.ThreeRacks())
        {
            api.Create("v1/nodes", null, (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(node))!);
        }
        var masters = new GrpcMasterStatusSource(_ => cluster.Launcher.MasterAddress, logs.CreateLogger<GrpcMasterStatusSource>())
        {
            TlsOf = _ => cluster.Launcher.ClientTls(FeitianK8s.Core.Security.ComponentRoles.Operator),
        };
        await using var host = new OperatorHost(
            new OperatorOptions { HttpPort = 0, Listen = "127.0.0.1", LeaderElect = false, Identity = "op" },
            new KubernetesClientConfiguration { Host = api.Url }, logs, masters,
            new ReconcilerOptions { NotReadyRetry = TimeSpan.FromMilliseconds(300), RolloutRetry = TimeSpan.FromMilliseconds(200) },
            new ControllerOptions { ResyncPeriod = TimeSpan.FromSeconds(2), RetryBaseDelay = TimeSpan.FromMilliseconds(50), RetryMaxDelay = TimeSpan.FromSeconds(1) });

        var manifest = (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(TestClusters.Minimal("prod", Ns)))!;
        manifest["metadata"] = new JsonObject { ["name"] = "prod" };
        manifest.Remove("status");
        api.Create("feitian.io/v1alpha1/storageclusters", Ns, manifest);
        await host.StartAsync();

        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (api.List("apps/v1/daemonsets", Ns).Count(d => d["metadata"]!["name"]!.GetValue<string>().Contains("chunkserver")) < 3)
        {
            Assert.True(DateTime.UtcNow < deadline, "chunk-server daemonsets did not appear");
            await Task.Delay(50);
        }
        var sets = api.List("apps/v1/daemonsets", Ns).Where(d => d["metadata"]!["name"]!.GetValue<string>().Contains("chunkserver")).ToList();
        // Two pods per rack, all running an older template.
        var serial = 0;
        foreach (var ds in sets)
        {
            for (var i = 0; i < 2; i++)
            {
                api.Create(Pods, Ns, Pod(ds, $"old-{serial++}", "old-template", ready: true));
            }
        }

        var maxDown = 0;
        var replaced = 0;
        while (true)
        {
            Assert.True(DateTime.UtcNow < deadline, $"rollout did not finish; {replaced} pods replaced");
            var pods = api.List(Pods, Ns);
            var down = 6 - pods.Count(IsReady);
            maxDown = Math.Max(maxDown, down);
            foreach (var ds in sets)
            {
                var rack = ds["spec"]!["template"]!["metadata"]!["labels"]![Names.RackLabel]!.GetValue<string>();
                var current = ds["spec"]!["template"]!["metadata"]!["annotations"]![Names.TemplateHashAnnotation]!.GetValue<string>();
                var inRack = pods.Where(p => p["metadata"]!["labels"]![Names.RackLabel]!.GetValue<string>() == rack).ToList();
                if (inRack.Count < 2)
                {
                    // DaemonSet controller: recreate from the current template, not ready yet.
                    api.Create(Pods, Ns, Pod(ds, $"new-{serial++}", current, ready: false));
                    replaced++;
                }
                foreach (var p in inRack.Where(p => !IsReady(p)))
                {
                    // Kubelet: the new chunk server passes its readiness probe.
                    api.Update(Pods, Ns, p["metadata"]!["name"]!.GetValue<string>(), o => o["status"] = ReadyStatus(true));
                }
            }
            if (pods.Count == 6 && pods.All(IsReady) && pods.All(p => p["metadata"]!["annotations"]![Names.TemplateHashAnnotation]!.GetValue<string>() != "old-template"))
            {
                break;
            }
            await Task.Delay(150);
        }
        Assert.Equal(6, replaced);
        Assert.True(maxDown <= 1, $"{maxDown} chunk servers were down at once");
        int Upgrades() => api.List("v1/events", Ns).Count(e => e["reason"]!.GetValue<string>() == "UpgradingChunkServer");
        while (Upgrades() < 6 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.Equal(6, Upgrades());
        var status = api.Get("feitian.io/v1alpha1/storageclusters", Ns, "prod")!["status"]!;
        Assert.True(status["capacity"]?["totalBytes"]?.GetValue<long>() > 0, "capacity comes from the real master");
        Assert.Equal(0, status["degradedChunks"]!.GetValue<long>());
    }

    private static bool IsReady(JsonObject pod) =>
        pod["status"]?["conditions"]?.AsArray().Any(c => c!["type"]!.GetValue<string>() == "Ready" && c["status"]!.GetValue<string>() == "True") == true;

    private static JsonObject ReadyStatus(bool ready) => new()
    {
        ["phase"] = "Running",
        ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready ? "True" : "False" }),
    };

    private static JsonObject Pod(JsonObject daemonSet, string name, string templateHash, bool ready) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Pod",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["labels"] = daemonSet["spec"]!["template"]!["metadata"]!["labels"]!.DeepClone(),
            ["annotations"] = new JsonObject { [Names.TemplateHashAnnotation] = templateHash },
        },
        ["spec"] = new JsonObject { ["containers"] = new JsonArray() },
        ["status"] = ReadyStatus(ready),
    };
}
