using FeitianK8s.Operator.Volumes;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Issue 9: the operator's master client works against a Raft group of three real master
/// processes with the leader killed (SIGKILL, proven down). Like the volume sync, a call that
/// fails is retried on the next reconcile; the client must find the new leader by itself.
/// </summary>
public sealed class ThreeMasterVolumesTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Volumes_are_listed_created_and_deleted_with_the_leader_killed()
    {
        await using var cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(output, LogLevel.Warning), chunkServers: 3, racks: 3, masters: 3);
        var addresses = string.Join(",", cluster.Launcher.MasterAddresses);
        using var volumes = new GrpcMasterVolumes(_ => addresses, NullLogger<GrpcMasterVolumes>.Instance) { TlsOf = _ => cluster.Launcher.ClientTls(FeitianK8s.Core.Security.ComponentRoles.Operator) };
        var storage = TestClusters.Minimal("prod", "storage");

        await RetryAsync("create before", () => volumes.CreateAsync(storage, new MasterVolumeRequest("before", 64L << 20, 3, new Dictionary<string, string>()), CancellationToken.None));
        var killed = await RaftLeader.KillAsync(cluster.Launcher, Generous);
        output.WriteLine($"master {killed} was the leader and is down");

        await RetryAsync("create after", () => volumes.CreateAsync(storage, new MasterVolumeRequest("after", 64L << 20, 3, new Dictionary<string, string>()), CancellationToken.None));
        IReadOnlyList<MasterVolume>? listed = null;
        await RetryAsync("list", async () => listed = await volumes.ListAsync(storage, CancellationToken.None) ?? throw new MasterVolumeException(MasterFailure.Transient, "no answer"));
        Assert.Equal(["after", "before"], listed!.Select(v => v.Name).Order(StringComparer.Ordinal));
        await RetryAsync("delete", () => volumes.DeleteAsync(storage, "before", CancellationToken.None));
        await RetryAsync("list again", async () => listed = await volumes.ListAsync(storage, CancellationToken.None) ?? throw new MasterVolumeException(MasterFailure.Transient, "no answer"));
        Assert.Equal(["after"], listed!.Select(v => v.Name));
    }

    /// <summary>Retries transient failures as the reconcile queue would, for up to a minute.</summary>
    private async Task RetryAsync(string what, Func<Task> call)
    {
        var deadline = DateTime.UtcNow + Generous;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await call();
                output.WriteLine($"{what}: done on attempt {attempt}");
                return;
            }
            catch (MasterVolumeException e) when (e.Failure == MasterFailure.Transient && DateTime.UtcNow < deadline)
            {
                output.WriteLine($"{what}: attempt {attempt} failed ({e.Message}); retrying");
                await Task.Delay(500);
            }
        }
    }
}
