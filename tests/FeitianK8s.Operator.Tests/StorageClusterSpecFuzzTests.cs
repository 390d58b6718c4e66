using System.Text.Json.Nodes;
using CsCheck;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Reconcile;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Operator.Tests.Schema;
using FeitianK8s.Testing;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Random <c>StorageCluster</c> specs, every field drawn from good, edge and hostile values. A spec
/// the CRD schema admits must deserialize; the operator's validator never throws on any spec it
/// can read, and a spec it passes always builds every desired object without an exception, each
/// container with arguments that name no empty value. So a bad custom resource is a clear
/// InvalidSpec condition, never a crashed reconcile. Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class StorageClusterSpecFuzzTests(ITestOutputHelper output)
{
    /// <summary>Mostly a good value, sometimes an edge or a hostile one.</summary>
    private static Gen<JsonNode?> Field(Gen<JsonNode?> good, Gen<JsonNode?> bad) => Gen.Frequency((12, good), (1, bad));

    private static Gen<JsonNode?> IntsIn(int min, int max) => Field(
        Gen.Int[min, max].Select(i => (JsonNode?)i),
        Gen.Frequency((3, Gen.Int[min - 3, max + 3].Select(i => (JsonNode?)i)), (1, Gen.Int.Select(i => (JsonNode?)i)), (1, Gen.OneOf<JsonNode?>("3", 3.5, true))));

    private static readonly Gen<JsonNode?> Ports = Field(
        Gen.Int[1024, 65535].Select(i => (JsonNode?)i),
        Gen.OneOf<JsonNode?>(0, -1, 65536, int.MaxValue, "9000", 9000));

    private static Gen<JsonNode?> Quantity(params string[] good) => Field(
        Gen.OneOf(good).Select(q => (JsonNode?)q),
        Gen.OneOf<JsonNode?>("0", "-1Mi", "", "abc", "1e3", "9999999999999999999Ei", "Mi", " 1Mi", 7));

    private static Gen<JsonNode?> Text(params string[] good) => Field(
        Gen.OneOf(good).Select(t => (JsonNode?)t),
        Gen.Frequency((3, Gen.OneOf<JsonNode?>("", " ", "Bad_Name", "a/b/c", "not a url", 5)), (1, Gen.String[Gen.Char, 0, 40].Select(t => (JsonNode?)t))));

    private static readonly Gen<JsonNode?> DataDirs = Field(
        Gen.OneOf("/var/lib/feitian/data", "/data/a", "/data/b").Array[1, 2].Select(a => (JsonNode?)new JsonArray(a.Distinct().Select(d => (JsonNode?)d).ToArray())),
        Gen.Frequency(
            (3, Gen.OneOf("/data/a", "relative", "", "/").Array[0, 3].Select(a => (JsonNode?)new JsonArray(a.Select(d => (JsonNode?)d).ToArray()))),
            (1, Gen.OneOf<JsonNode?>("/data", 5))));

    /// <summary>An object whose every field is left out now and then.</summary>
    private static Gen<JsonNode?> Object(params (string Name, Gen<JsonNode?> Value)[] fields)
    {
        Gen<List<(string Name, JsonNode? Value)>> pairs = Gen.Const(() => new List<(string, JsonNode?)>());
        foreach (var (name, value) in fields)
        {
            var maybe = Gen.Frequency((4, value), (1, Gen.Const((JsonNode?)null)));
            pairs = Gen.Select(pairs, maybe, (list, v) => new List<(string, JsonNode?)>(list) { (name, v) });
        }
        return pairs.Select(list =>
        {
            var obj = new JsonObject();
            foreach (var (name, value) in list)
                if (value is not null)
                    obj[name] = value.DeepClone();
            return (JsonNode?)obj;
        });
    }

    private static readonly Gen<JsonNode?> Specs = Object(
        ("masters", Object(("replicas", IntsIn(1, 5)), ("storage", Quantity("10Gi", "1Gi", "500M", "1.5Gi")), ("port", Ports), ("httpPort", Ports), ("raftPort", Ports))),
        ("chunkServers", Object(("rackLabel", Text("topology.kubernetes.io/zone", "feitian.io/rack")), ("dataDirs", DataDirs), ("port", Ports), ("httpPort", Ports))),
        ("replication", Object(("factor", IntsIn(1, 5)), ("minRacks", IntsIn(1, 5)))),
        ("rebuild", Object(("bandwidthPerNode", Quantity("100Mi", "1Gi", "500M", "0")), ("concurrentPerNode", IntsIn(1, 8)), ("deadAfterSeconds", IntsIn(5, 600)),
            ("maxRebuilds", IntsIn(1, 100)), ("scrubBandwidthPerNode", Quantity("4Mi", "0", "16Mi")))),
        ("snapshotTarget", Object(("endpoint", Text("http://s3.local:9000", "https://oss.example.com")), ("bucket", Text("backups", "feitian-snapshots")),
            ("region", Text("us-east-1", "cn-hangzhou")), ("credentialsSecret", Text("s3-credentials")))),
        ("storageClass", Object(("name", Text("feitian", "fast")), ("isDefault", Field(Gen.OneOf<JsonNode?>(true, false), Gen.OneOf<JsonNode?>("yes"))),
            ("fsType", Field(Gen.OneOf<JsonNode?>("ext4", "xfs"), Gen.OneOf<JsonNode?>("btrfs", ""))))));

    [Fact]
    public void Random_specs_are_refused_with_clear_errors_or_build_every_object()
    {
        var schema = Repo.SchemaOf(Repo.CrdsByKind()["StorageCluster"]);
        var env = new ClusterEnvironment(TestClusters.ThreeRacks(), SnapshotClassCrdExists: true);
        int admitted = 0, refusedBySchema = 0, refusedByOperator = 0, builds = 0;

        Specs.Sample(spec =>
        {
            var generated = new JsonObject
            {
                ["apiVersion"] = StorageCluster.ApiVersionName, ["kind"] = StorageCluster.KindName,
                ["metadata"] = new JsonObject { ["name"] = "fuzz", ["namespace"] = "storage" }, ["spec"] = spec!.DeepClone(),
            };
            // Parsed back from text, as the API server receives it.
            var obj = (JsonObject)JsonNode.Parse(generated.ToJsonString())!;
            var schemaErrors = StructuralSchemaValidator.Validate(schema, obj); // also applies the schema's defaults
            bool schemaAdmits = schemaErrors.Count == 0;
            StorageCluster? cluster;
            try
            {
                cluster = k8s.KubernetesJson.Deserialize<StorageCluster>(obj.ToJsonString());
            }
            catch (System.Text.Json.JsonException) when (!schemaAdmits)
            {
                Interlocked.Increment(ref refusedBySchema);
                return; // the API server would never have stored it
            }
            Assert.NotNull(cluster);
            if (schemaAdmits)
                Interlocked.Increment(ref admitted);
            else
                Interlocked.Increment(ref refusedBySchema);

            var errors = SpecValidator.Validate(cluster.Spec);
            Assert.All(errors, e => Assert.StartsWith("spec.", e));
            if (errors.Count > 0)
            {
                Interlocked.Increment(ref refusedByOperator);
                return;
            }
            var desired = DesiredState.Build(cluster, env);
            Assert.NotEmpty(desired);
            foreach (var container in desired.Select(d => d.Object).OfType<k8s.Models.V1Deployment>().SelectMany(d => d.Spec.Template.Spec.Containers)
                         .Concat(desired.Select(d => d.Object).OfType<k8s.Models.V1StatefulSet>().SelectMany(s => s.Spec.Template.Spec.Containers))
                         .Concat(desired.Select(d => d.Object).OfType<k8s.Models.V1DaemonSet>().SelectMany(s => s.Spec.Template.Spec.Containers)))
            {
                Assert.All(container.Args ?? [], a => Assert.False(string.IsNullOrWhiteSpace(a), $"container {container.Name} got an empty argument"));
                Assert.DoesNotContain(container.Args ?? [], a => a.EndsWith('='));
            }
            Interlocked.Increment(ref builds);
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, writeLine: output.WriteLine);

        output.WriteLine($"schema admitted {admitted}, schema refused {refusedBySchema}, operator refused {refusedByOperator}, built {builds}");
        Assert.True(admitted > 0, "the fuzzer reached specs the schema admits");
        Assert.True(builds > 0, "the fuzzer reached specs that build");
        Assert.True(refusedByOperator > 0, "the fuzzer reached specs the operator refuses");
    }
}
