using System.Text.Json.Nodes;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Tests.Fake;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using k8s;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Rolling upgrade of the Raft masters: the operator against a FAKE Kubernetes API server, asking
/// three REAL master processes (GetMasterState) whether the group is whole and caught up. The test
/// plays the StatefulSet controller and kubelet: a deleted master pod's process is stopped and
/// started again (same data directory and ports, as a pod on its PersistentVolumeClaim), the pod
/// comes back from the current template and turns ready once its master answers.
/// </summary>
public sealed class FakeApiServerMasterRollingUpgradeTests(ITestOutputHelper output)
{
    private const string Ns = "storage";
    private const string Pods = "v1/pods";

    [Fact]
    public async Task Masters_are_replaced_one_at_a_time_followers_first_while_a_quorum_answers()
    {
        using var logs = XunitLoggerProvider.CreateFactory(output, LogLevel.Warning);
        await using var cluster = await TestCluster.StartAsync(logs, chunkServers: 3, racks: 3, masters: 3);
        await using var api = await FakeKubeApiServer.StartAsync(logs);
        foreach (var node in TestClusters.ThreeRacks())
        {
            api.Create("v1/nodes", null, (JsonObject)JsonNode.Parse(KubernetesJson.Serialize(node))!);
        }
        var addresses = string.Join(",", cluster.Launcher.MasterAddresses);
        using var masters = new GrpcMasterStatusSource(_ => addresses, logs.CreateLogger<GrpcMasterStatusSource>())
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

        var deadline = DateTime.UtcNow.AddMinutes(4);
        JsonObject? set;
        while ((set = api.Get("apps/v1/statefulsets", Ns, "prod-master")) is null)
        {
            Assert.True(DateTime.UtcNow < deadline, "the master statefulset did not appear");
            await Task.Delay(50);
        }
        Assert.Equal("OnDelete", set["spec"]!["updateStrategy"]!["type"]!.GetValue<string>());
        for (var i = 0; i < 3; i++)
        {
            api.Create(Pods, Ns, Pod(set, i, "old-template", ready: true));
        }

        var channels = cluster.Launcher.MasterAddresses.Select(a => cluster.Launcher.Channel(a)).ToArray();
        var replaced = new List<int>();
        var maxDown = 0;
        var minAnswering = 3;
        try
        {
            while (true)
            {
                Assert.True(DateTime.UtcNow < deadline, $"master rollout did not finish; replaced {string.Join(",", replaced)}");
                var states = await Task.WhenAll(channels.Select(StateOf));
                // A member counts while it runs and answers, whatever its role: right after the leader goes, the other two
                // are candidates for a moment, and they are the majority that elects the next leader.
                minAnswering = Math.Min(minAnswering, states.Count(s => s is not null));
                var pods = api.List(Pods, Ns).ToDictionary(p => p["metadata"]!["name"]!.GetValue<string>());
                maxDown = Math.Max(maxDown, 3 - pods.Values.Count(IsReady));
                var current = set["spec"]!["template"]!["metadata"]!["annotations"]![Names.TemplateHashAnnotation]!.GetValue<string>();
                for (var i = 0; i < 3; i++)
                {
                    if (!pods.TryGetValue($"prod-master-{i}", out var pod))
                    {
                        // The operator deleted the pod: the container stops, the StatefulSet controller recreates the pod.
                        replaced.Add(i);
                        output.WriteLine($"pod prod-master-{i} deleted while it was {states[i]?.Role ?? "unreachable"}; restarting master {i}");
                        await cluster.Launcher.RestartMasterAsync(i);
                        api.Create(Pods, Ns, Pod(set, i, current, ready: false));
                    }
                    else if (!IsReady(pod) && states[i] is { Role: "leader" or "follower" })
                    {
                        // Kubelet: the new master passes its readiness probe.
                        api.Update(Pods, Ns, $"prod-master-{i}", o => o["status"] = ReadyStatus(true));
                    }
                }
                if (pods.Count == 3 && pods.Values.All(IsReady)
                    && pods.Values.All(p => p["metadata"]!["annotations"]![Names.TemplateHashAnnotation]!.GetValue<string>() == current))
                {
                    break;
                }
                await Task.Delay(100);
            }
        }
        finally
        {
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
        }

        Assert.Equal([0, 1, 2], replaced.Order());
        Assert.True(maxDown <= 1, $"{maxDown} master pods were down at once");
        Assert.True(minAnswering >= 2, $"only {minAnswering} masters answered at one point: the quorum was at risk");
        List<string> Upgrades() => api.List("v1/events", Ns).Where(e => e["reason"]!.GetValue<string>() == "UpgradingMaster")
            .Select(e => e["message"]!.GetValue<string>()).ToList();
        while (Upgrades().Count < 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        // In the order they happened: each names how many masters were still outdated (the fake lists events unordered).
        var upgrades = Upgrades().OrderByDescending(m => int.Parse(m.Split('(')[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        upgrades.ForEach(output.WriteLine);
        Assert.Equal(3, upgrades.Count);
        Assert.All(upgrades.Take(2), m => Assert.Contains("is a follower", m));
        Assert.Contains("the leader, last", upgrades[2]);
        // The group is whole again and serves: a leader answers a linearizable read.
        var status = await cluster.Launcher.GetClusterStatusAsync();
        Assert.Equal(3, status.ChunkServers.Count);
    }

    private static async Task<MasterStatus?> StateOf(GrpcChannel channel)
    {
        try
        {
            // Generous, and waiting for the channel: a busy machine or a channel in reconnect backoff after a
            // restart (a TLS handshake pending) must not pass for a master that is down.
            return await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetMasterStateAsync(new GetMasterStateRequest(),
                new Grpc.Core.CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)).WithWaitForReady());
        }
        catch (RpcException)
        {
            return null;
        }
    }

    private static bool IsReady(JsonObject pod) =>
        pod["status"]?["conditions"]?.AsArray().Any(c => c!["type"]!.GetValue<string>() == "Ready" && c["status"]!.GetValue<string>() == "True") == true;

    private static JsonObject ReadyStatus(bool ready) => new()
    {
        ["phase"] = "Running",
        ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready ? "True" : "False" }),
    };

    private static JsonObject Pod(JsonObject statefulSet, int ordinal, string templateHash, bool ready) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Pod",
        ["metadata"] = new JsonObject
        {
            ["name"] = $"prod-master-{ordinal}",
            ["labels"] = statefulSet["spec"]!["template"]!["metadata"]!["labels"]!.DeepClone(),
            ["annotations"] = new JsonObject { [Names.TemplateHashAnnotation] = templateHash },
        },
        ["spec"] = new JsonObject { ["containers"] = new JsonArray() },
        ["status"] = ReadyStatus(ready),
    };
}
