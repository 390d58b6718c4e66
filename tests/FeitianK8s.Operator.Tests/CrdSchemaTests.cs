using System.Text.Json.Nodes;
using FeitianK8s.Operator.Tests.Schema;

namespace FeitianK8s.Operator.Tests;

public sealed class CrdSchemaTests(ITestOutputHelper output)
{
    public static TheoryData<string> BadExamples() =>
        new(Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "bad-examples"), "*.yaml").Select(Path.GetFileName).Order()!);

    [Fact]
    public void Crds_parse_and_declare_status_printer_columns_short_names_and_defaults()
    {
        var crds = Repo.CrdsByKind();
        Assert.Equal(["StorageCluster", "Volume"], crds.Keys.Order());
        foreach (var (kind, crd) in crds)
        {
            Assert.Equal("apiextensions.k8s.io/v1", crd["apiVersion"]!.GetValue<string>());
            Assert.Equal("feitian.io", crd["spec"]!["group"]!.GetValue<string>());
            var version = crd["spec"]!["versions"]!.AsArray().Single()!;
            Assert.Equal("v1alpha1", version["name"]!.GetValue<string>());
            Assert.NotNull(version["subresources"]!["status"]);
            Assert.NotEmpty(version["additionalPrinterColumns"]!.AsArray());
            Assert.NotEmpty(crd["spec"]!["names"]!["shortNames"]!.AsArray());
            Assert.Equal("object", Repo.SchemaOf(crd)["type"]!.GetValue<string>());
        }
        var columns = crds["StorageCluster"]["spec"]!["versions"]![0]!["additionalPrinterColumns"]!.AsArray().Select(c => c!["name"]!.GetValue<string>());
        Assert.Superset(new HashSet<string> { "Phase", "Masters", "ChunkServers", "Capacity" }, columns.ToHashSet());
        // Also parses with the client library's own YAML reader.
        foreach (var file in Directory.GetFiles(Repo.Path("crds"), "*.yaml"))
        {
            var typed = k8s.KubernetesYaml.Deserialize<k8s.Models.V1CustomResourceDefinition>(File.ReadAllText(file));
            Assert.NotNull(typed.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]);
        }
    }

    [Fact]
    public void Volume_objects_the_operator_writes_are_valid_and_show_health_and_origin()
    {
        var crd = Repo.CrdsByKind()["Volume"];
        var columns = crd["spec"]!["versions"]![0]!["additionalPrinterColumns"]!.AsArray()
            .ToDictionary(c => c!["name"]!.GetValue<string>(), c => c!["jsonPath"]!.GetValue<string>());
        Assert.Equal(".status.replicaHealth", columns["Health"]);
        Assert.Equal(".metadata.labels.feitian\\.io/origin", columns["Origin"]);
        Assert.Equal(".status.state", columns["State"]);

        // A mirror with the status the sync writes: what the API server would store must pass the schema.
        var csi = new Volumes.MasterVolume("pvc-1", 3L << 30, 2, new Dictionary<string, string>
        {
            [Volumes.VolumeNames.CsiManagedByLabel] = "feitian.csi.k8s.io",
            [Volumes.VolumeNames.CsiRackSpreadLabel] = "false",
        }, "node-a1", 1);
        var plan = Volumes.VolumePlanner.Plan(new Volumes.VolumeSyncInput(TestClusters.Minimal(), [], new HashSet<string>(), [csi])).For("pvc-1")!;
        var mirror = plan.Steps.OfType<Volumes.CreateMirror>().Single().Mirror;
        mirror.Status = plan.Status;
        var json = (JsonObject)JsonNode.Parse(k8s.KubernetesJson.Serialize(mirror))!;
        json["metadata"] = new JsonObject { ["name"] = "pvc-1" };
        var errors = StructuralSchemaValidator.Validate(Repo.SchemaOf(crd), json);
        Assert.Empty(errors);
        Assert.Equal("Degraded", json["status"]!["state"]!.GetValue<string>());
        Assert.Equal("1/2", json["status"]!["replicaHealth"]!.GetValue<string>());
        Assert.Equal(3L << 30, json["status"]!["sizeBytes"]!.GetValue<long>());
    }

    [Fact]
    public void Defaults_fill_a_minimal_storage_cluster_the_same_way_the_operator_models_do()
    {
        var schema = Repo.SchemaOf(Repo.CrdsByKind()["StorageCluster"]);
        var obj = new JsonObject { ["apiVersion"] = "feitian.io/v1alpha1", ["kind"] = "StorageCluster", ["metadata"] = new JsonObject(), ["spec"] = new JsonObject() };
        Assert.Empty(StructuralSchemaValidator.Validate(schema, obj));
        var models = new Resources.StorageClusterSpec();
        Assert.Equal(models.Masters.Replicas.ToString(), obj["spec"]!["masters"]!["replicas"]!.ToString());
        Assert.Equal(models.Replication.Factor.ToString(), obj["spec"]!["replication"]!["factor"]!.ToString());
        Assert.Equal(models.ChunkServers.RackLabel, obj["spec"]!["chunkServers"]!["rackLabel"]!.GetValue<string>());
        Assert.Equal(models.ChunkServers.DataDirs.Single(), obj["spec"]!["chunkServers"]!["dataDirs"]![0]!.GetValue<string>());
        Assert.Equal(models.StorageClass.FsType, obj["spec"]!["storageClass"]!["fsType"]!.GetValue<string>());
    }

    [Theory]
    [MemberData(nameof(BadExamples))]
    public void Bad_examples_are_refused_with_a_clear_message(string file)
    {
        var text = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "bad-examples", file));
        var expected = text.Split('\n').Where(l => l.StartsWith("# expect: ", StringComparison.Ordinal)).Select(l => l["# expect: ".Length..].Trim()).ToList();
        Assert.NotEmpty(expected);
        var doc = (JsonObject)YamlToJson.ReadAll(text).Single()!;
        var crd = Repo.CrdsByKind()[doc["kind"]!.GetValue<string>()];
        var errors = StructuralSchemaValidator.Validate(Repo.SchemaOf(crd), doc);
        foreach (var e in errors)
        {
            output.WriteLine(e);
        }
        foreach (var fragment in expected)
        {
            Assert.Contains(errors, e => e.Contains(fragment, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Every_feitian_object_in_examples_is_valid()
    {
        var crds = Repo.CrdsByKind();
        var checkedCount = 0;
        foreach (var file in Directory.GetFiles(Repo.Path("examples"), "*.yaml"))
        {
            foreach (var doc in YamlToJson.ReadAll(File.ReadAllText(file)).OfType<JsonObject>())
            {
                Assert.Null(doc["metadata"]?["namespace"]);
                if (doc["kind"]?.GetValue<string>() is { } kind && crds.TryGetValue(kind, out var crd))
                {
                    Assert.Empty(StructuralSchemaValidator.Validate(Repo.SchemaOf(crd), doc));
                    checkedCount++;
                }
            }
        }
        Assert.True(checkedCount >= 1);
    }
}
