using System.Text;
using CsCheck;
using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;
using Grpc.Core;
using CsiController = FeitianK8s.Proto.Csi.Controller;
using AccessMode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Tests;

/// <summary>
/// Random controller calls against the real driver and master: names of every kind (upper case,
/// 128 and 129 bytes, control characters, repeats), capacity ranges with negative, inverted and
/// enormous bounds, capabilities with unknown modes and file systems, StorageClass parameters
/// good and bad, and deletes and lookups of any id. Each answer is OK or a refusal the spec names
/// (never INTERNAL or UNKNOWN); an acknowledged create honours the range and is idempotent; and
/// afterwards the master holds exactly the acknowledged volumes: a refused call created nothing.
/// Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
[Collection(CsiCollection.Name)]
public sealed class ControllerFuzzTests : IDisposable
{
    private const long MiB = 1 << 20;
    private static readonly StatusCode[] Refusals = [StatusCode.InvalidArgument, StatusCode.OutOfRange, StatusCode.AlreadyExists, StatusCode.NotFound, StatusCode.ResourceExhausted];
    private readonly CsiFixture _f;
    private readonly ITestOutputHelper _output;

    public ControllerFuzzTests(CsiFixture fixture, ITestOutputHelper output)
    {
        _f = fixture;
        _f.Output.Current = output;
        _output = output;
    }

    public void Dispose() => _f.Output.Current = null;

    private sealed record Call(bool Delete, string Name, long Required, long Limit, VolumeCapability[] Capabilities, (string Key, string Value)[] Parameters)
    {
        public override string ToString() =>
            $"{(Delete ? "Delete" : "Create")}('{Name}', required {Required}, limit {Limit}, {Capabilities.Length} capabilities [{string.Join("; ", Capabilities.Select(c => c.ToString()))}], parameters [{string.Join(", ", Parameters.Select(p => p.Key + "=" + p.Value))}])";
    }

    private static readonly Gen<string> Names = Gen.Frequency(
        (6, Gen.OneOf("pvc-fuzz-a", "pvc-fuzz-b", "Fuzz-Upper-Case-C", "fuzz name with spaces", "fuzz/slash", "v-0123456789abcdef0123456789abcdef01234567")),
        (1, Gen.OneOf("", new string('F', 128), new string('f', 129), "fuzz\u0001ctl", "fuzz-ü-é-" + new string('x', 110))),
        (1, Gen.String[Gen.Char, 1, 40].Select(s => "fz-" + s)));

    private static readonly Gen<long> Sizes = Gen.Frequency(
        (6, Gen.OneOf(0L, 4096L, MiB, 8 * MiB + 3, 16 * MiB)),
        (1, Gen.OneOf(-5L, 1L, long.MaxValue, 1L << 50, long.MinValue)));

    private static readonly Gen<VolumeCapability> Capabilities = Gen.Select(
        Gen.Int[0, 2], Gen.Frequency((6, Gen.OneOf("", "ext4", "xfs")), (1, Gen.OneOf("btrfs", "EXT4", " ", "ext4\0"))),
        Gen.Frequency((6, Gen.Int[1, 7]), (1, Gen.Int[-1, 100])), Gen.OneOf("", "noatime", "ro", "x=y").Array[0, 2],
        (access, fsType, mode, flags) =>
        {
            var capability = new VolumeCapability();
            if (access == 1)
            {
                capability.Mount = new VolumeCapability.Types.MountVolume { FsType = fsType };
                capability.Mount.MountFlags.AddRange(flags);
            }
            else if (access == 2)
            {
                capability.Block = new VolumeCapability.Types.BlockVolume();
            }
            if (mode != 0)
                capability.AccessMode = new AccessMode { Mode = (Mode)mode };
            return capability;
        });

    private static readonly Gen<(string, string)> Parameters = Gen.Frequency(
        (6, Gen.OneOf(("replicas", "3"), ("replicas", "2"), ("rackSpread", "true"), ("rackSpread", "false"), ("fsType", "ext4"), ("csi.storage.k8s.io/pvc/name", "data"))),
        (1, Gen.OneOf(("replicas", "0"), ("replicas", "6"), ("replicas", "many"), ("rackSpread", "maybe"), ("fsType", "btrfs"), ("colour", "blue"), ("", ""))));

    private static readonly Gen<Call> Calls = Gen.Select(
        Gen.Int[0, 5], Names, Sizes, Gen.Frequency((3, Gen.Const(0L)), (1, Sizes)), Capabilities.Array[0, 2], Parameters.Array[0, 3],
        (dice, name, required, limit, capabilities, parameters) => new Call(dice == 0, name, required, limit, capabilities, parameters));

    [Fact]
    public async Task Random_create_and_delete_calls_get_spec_errors_and_leave_exactly_the_acknowledged_volumes()
    {
        var controller = _f.Client.Controller;
        var before = await AllVolumeIdsAsync();
        var acknowledged = new Dictionary<string, Volume>(StringComparer.Ordinal); // by CO name
        var outcomes = new Dictionary<string, int>();

        try
        {
            await Calls.Array[1, 8].SampleAsync(async calls =>
            {
                foreach (var call in calls)
                {
                    string outcome = await PlayAsync(controller, call, acknowledged);
                    outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                }
                var now = await AllVolumeIdsAsync();
                var created = now.Except(before).Order().ToArray();
                var expected = acknowledged.Values.Select(v => v.VolumeId).Order().ToArray();
                Assert.True(created.SequenceEqual(expected),
                    $"the master holds [{string.Join(", ", created)}], the acknowledged volumes are [{string.Join(", ", expected)}] after {string.Join(" | ", calls.Select(c => c.ToString()))}");
            }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 1, writeLine: _output.WriteLine);
        }
        finally
        {
            foreach (var volume in acknowledged.Values)
                await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }

        _output.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}")));
        Assert.True(outcomes.GetValueOrDefault("Create OK") > 0, "the fuzzer reached acknowledged creates");
        Assert.True(outcomes.Keys.Count(k => !k.EndsWith(" OK", StringComparison.Ordinal)) >= 3, "the fuzzer reached several kinds of refusal");
    }

    private static async Task<string> PlayAsync(CsiController.ControllerClient controller, Call call, Dictionary<string, Volume> acknowledged)
    {
        try
        {
            if (call.Delete)
            {
                // Delete takes an id: either one the driver gave out for this name, or the raw name.
                string id = acknowledged.TryGetValue(call.Name, out var known) ? known.VolumeId : call.Name;
                await controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
                foreach (var name in acknowledged.Where(a => a.Value.VolumeId == id).Select(a => a.Key).ToList())
                    acknowledged.Remove(name);
                return "Delete OK";
            }
            var request = new CreateVolumeRequest
            {
                Name = call.Name,
                CapacityRange = call.Required == 0 && call.Limit == 0 ? null : new CapacityRange { RequiredBytes = call.Required, LimitBytes = call.Limit },
            };
            request.VolumeCapabilities.AddRange(call.Capabilities);
            foreach (var (key, value) in call.Parameters)
                request.Parameters[key] = value;
            var response = await controller.CreateVolumeAsync(request);
            var volume = response.Volume;
            Assert.True(Encoding.UTF8.GetByteCount(call.Name) is > 0 and <= 128, $"{call} was acknowledged with a name the spec forbids");
            Assert.NotEmpty(call.Capabilities);
            if (call.Required > 0)
                Assert.True(volume.CapacityBytes >= call.Required, $"{call} got {volume.CapacityBytes} bytes, less than required");
            if (call.Limit > 0)
                Assert.True(volume.CapacityBytes <= call.Limit, $"{call} got {volume.CapacityBytes} bytes, more than the limit");
            if (acknowledged.TryGetValue(call.Name, out var earlier))
                Assert.Equal(earlier.VolumeId, volume.VolumeId);
            Assert.DoesNotContain(acknowledged, a => a.Key != call.Name && a.Value.VolumeId == volume.VolumeId);
            acknowledged[call.Name] = volume;
            return "Create OK";
        }
        catch (RpcException refused)
        {
            Assert.True(Refusals.Contains(refused.StatusCode), $"{call} was answered {refused.StatusCode}: {refused.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(refused.Status.Detail), $"{call} was refused without a message");
            return $"{(call.Delete ? "Delete" : "Create")} {refused.StatusCode}";
        }
    }

    private async Task<HashSet<string>> AllVolumeIdsAsync()
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        string token = "";
        do
        {
            var page = await _f.Client.Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = token, MaxEntries = 100 });
            ids.UnionWith(page.Entries.Select(e => e.Volume.VolumeId));
            token = page.NextToken;
        }
        while (token.Length > 0);
        return ids;
    }
}
