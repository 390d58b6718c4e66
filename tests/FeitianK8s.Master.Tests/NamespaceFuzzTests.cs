using CsCheck;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// Random namespace calls against a real master: paths good and hostile (relative, empty
/// components, "..", NUL, thousands of characters, files under files), replica counts out of
/// range, renames onto and under each other, deletes of anything. Each answer is OK or a refusal
/// with a status a client can act on (never INTERNAL or UNKNOWN), and after every sequence the
/// master lists exactly the files a model built from the acknowledged calls holds: a refused
/// call changed nothing. Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class NamespaceFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly StatusCode[] Refusals =
        [StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.AlreadyExists, StatusCode.FailedPrecondition, StatusCode.OutOfRange];

    private readonly TempDirectory _dir = new();
    private RunningMaster _master = null!;

    public async Task InitializeAsync() => _master = await RunningMaster.StartAsync(_dir.Path, output);

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    private enum Kind { Create, Stat, Delete, Rename }

    private sealed record Call(Kind Kind, string Path, string Target, uint Replicas)
    {
        public override string ToString() => Kind == Kind.Rename ? $"Rename({Path} -> {Target})" : $"{Kind}({Path}, replicas {Replicas})";
    }

    private static readonly Gen<string> Paths = Gen.Frequency(
        (8, Gen.OneOf("/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/deep", "/c")),
        (1, Gen.OneOf("", "/", "a", "//a", "/a/", "/a/../b", "/./a", "/a\0b", "/" + new string('n', 300), "/" + new string('p', 5000), "/ü/ß")),
        (1, Gen.String[Gen.Char, 0, 30]));

    private static readonly Gen<Call> Calls = Gen.Select(
        Gen.Enum<Kind>(), Paths, Paths, Gen.Frequency((6, Gen.UInt[0, 3]), (1, Gen.UInt)),
        (kind, path, target, replicas) => new Call(kind, path, target, replicas));

    [Fact]
    public async Task Random_namespace_calls_get_actionable_statuses_and_the_master_lists_exactly_the_acknowledged_files()
    {
        var files = new HashSet<string>(StringComparer.Ordinal);
        var outcomes = new Dictionary<string, int>();

        await Calls.Array[1, 12].SampleAsync(async calls =>
        {
            foreach (var call in calls)
            {
                string outcome = await PlayAsync(call, files);
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
            var listed = (await _master.Client.ListFilesAsync(new ListFilesRequest { Path = "/", Recursive = true })).Entries
                .Where(e => !e.IsDirectory).Select(e => e.Path).Order(StringComparer.Ordinal).ToArray();
            var expected = files.Order(StringComparer.Ordinal).ToArray();
            Assert.True(listed.SequenceEqual(expected),
                $"the master lists [{string.Join(", ", listed)}], the acknowledged files are [{string.Join(", ", expected)}] after {string.Join("; ", calls.Select(c => c.ToString()))}");
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 1, writeLine: output.WriteLine);

        output.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}")));
        Assert.True(outcomes.GetValueOrDefault("Create OK") > 0, "the fuzzer reached acknowledged creates");
        Assert.True(outcomes.Keys.Count(k => !k.EndsWith(" OK", StringComparison.Ordinal)) >= 3, "the fuzzer reached several kinds of refusal");
    }

    private async Task<string> PlayAsync(Call call, HashSet<string> files)
    {
        var client = _master.Client;
        try
        {
            switch (call.Kind)
            {
                case Kind.Create:
                    var created = await client.CreateFileAsync(new CreateFileRequest { Path = call.Path, Replicas = call.Replicas });
                    Assert.DoesNotContain(call.Path, files);
                    Assert.DoesNotContain(files, f => call.Path.StartsWith(f + "/", StringComparison.Ordinal)); // never a file under a file
                    files.Add(call.Path);
                    Assert.Equal(call.Path, created.Path);
                    break;
                case Kind.Stat:
                    var stat = await client.StatFileAsync(new StatFileRequest { Path = call.Path });
                    Assert.Contains(call.Path, files);
                    Assert.Equal(0ul, stat.Length);
                    break;
                case Kind.Delete:
                    await client.DeleteFileAsync(new DeleteFileRequest { Path = call.Path });
                    Assert.True(files.Remove(call.Path), $"{call} was acknowledged for a file that does not exist");
                    break;
                case Kind.Rename:
                    await client.RenameFileAsync(new RenameFileRequest { From = call.Path, To = call.Target });
                    var moved = files.Where(f => f == call.Path || f.StartsWith(call.Path + "/", StringComparison.Ordinal)).ToList();
                    Assert.True(moved.Count > 0, $"{call} was acknowledged for a path that does not exist");
                    foreach (var path in moved)
                    {
                        files.Remove(path);
                        files.Add(call.Target + path[call.Path.Length..]);
                    }
                    break;
            }
            return $"{call.Kind} OK";
        }
        catch (RpcException refused)
        {
            Assert.True(Refusals.Contains(refused.StatusCode), $"{call} was answered {refused.StatusCode}: {refused.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(refused.Status.Detail), $"{call} was refused without a message");
            return $"{call.Kind} {refused.StatusCode}";
        }
    }
}
