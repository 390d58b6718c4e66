using FeitianK8s.Proto.Master;

namespace FeitianK8s.Core.Views;

// The documents `feitian status --json` prints and the master's web console reads (/api/status):
// one model, one builder, one serializer, so the two never drift. Field names are a contract.

/// <summary>One master: role leader/follower/candidate/unreachable, its Raft term and commit index, and how many entries it is behind the leader (null when no leader answered).</summary>
public sealed record MasterView(string Address, string Role, ulong Term, ulong CommitIndex, ulong AppliedIndex, ulong? Lag);

/// <summary>Scrubber progress of a chunk server; LastCompleted is null until a first full pass completed.</summary>
public sealed record ScrubView(DateTimeOffset? LastCompleted, ulong BytesVerified, ulong BadFound);

public sealed record ChunkServerView(string Id, string Node, string Rack, bool Alive, ulong CapacityBytes, ulong UsedBytes, ulong Chunks, string Address,
    bool Dead, ScrubView? Scrub);

public sealed record RebuildView(ulong BytesRemaining, double BytesPerSecond, uint CopiesActive);

public sealed record StatusView(IReadOnlyList<MasterView> Masters, IReadOnlyList<ChunkServerView> ChunkServers, ulong DegradedChunks, ulong BadReplicas,
    ulong UnderReplicatedChunks, RebuildView Rebuild)
{
    public bool Healthy => DegradedChunks == 0 && UnderReplicatedChunks == 0 && Rebuild.CopiesActive == 0;

    /// <summary>Time left at the current rate; null when nothing is left or nothing moves.</summary>
    public TimeSpan? Eta => Rebuild.BytesRemaining > 0 && Rebuild.BytesPerSecond > 0 ? TimeSpan.FromSeconds(Rebuild.BytesRemaining / Rebuild.BytesPerSecond) : null;
}

/// <summary>Builds <see cref="StatusView"/> from the masters' own states and the leader's cluster status.</summary>
public static class StatusViews
{
    /// <summary>Masters sorted by address, chunk servers by node: the CLI and the console print the same document.</summary>
    public static StatusView Build(IReadOnlyList<MasterView> masters, ClusterStatus status) => new(
        masters.OrderBy(m => m.Address, StringComparer.Ordinal).ToList(),
        status.ChunkServers.OrderBy(c => c.Node, StringComparer.Ordinal)
            .Select(c => new ChunkServerView(c.Id, c.Node, c.Rack, c.Alive, c.CapacityBytes, c.UsedBytes, c.Chunks, c.Address, c.Dead,
                c.Scrub is { } s ? new ScrubView(s.LastCompletedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(s.LastCompletedUnixMs) : null, s.BytesVerified, s.BadFound) : null))
            .ToList(),
        status.DegradedChunks,
        status.BadReplicas,
        status.UnderReplicatedChunks,
        new RebuildView(status.Rebuild?.BytesRemaining ?? 0, status.Rebuild?.BytesPerSecond ?? 0, status.Rebuild?.CopiesActive ?? 0));
}

/// <summary>Asks every master for its own Raft state (GetMasterState); a master that does not answer is "unreachable".</summary>
public static class MasterStates
{
    public static async Task<IReadOnlyList<MasterView>> CollectAsync(IReadOnlyList<string> addresses, CancellationToken ct, Security.ComponentTls? tls = null)
    {
        var states = await Task.WhenAll(addresses.Select(async address =>
        {
            try
            {
                using var channel = Common.GrpcChannels.Create(address, tls: tls);
                var state = await new Master.MasterClient(channel).GetMasterStateAsync(new GetMasterStateRequest(),
                    deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: ct).ConfigureAwait(false);
                return (Address: address, State: state);
            }
            catch (Grpc.Core.RpcException)
            {
                return (Address: address, State: (MasterStatus?)null);
            }
        })).ConfigureAwait(false);
        var leaderCommit = states.Where(s => s.State?.Role == "leader").Select(s => (ulong?)s.State!.CommitIndex).Max();
        return states.Select(s => s.State is null
                ? new MasterView(s.Address, "unreachable", 0, 0, 0, null)
                : new MasterView(s.Address, s.State.Role, s.State.Term, s.State.CommitIndex, s.State.AppliedIndex,
                    leaderCommit is { } commit ? commit - Math.Min(commit, s.State.AppliedIndex) : null))
            .ToList();
    }
}

/// <summary>Replica health of a volume's chunks as the master sees it (live servers only).</summary>
public sealed record VolumeHealthView(string State, ulong Chunks, ulong DegradedChunks, ulong UnavailableChunks)
{
    public static VolumeHealthView Of(VolumeHealth? health) => health is null
        ? new("unknown", 0, 0, 0)
        : new(health.UnavailableChunks > 0 ? "unavailable" : health.DegradedChunks > 0 ? "degraded" : "healthy",
            health.Chunks, health.DegradedChunks, health.UnavailableChunks);
}

/// <summary>A volume in `feitian volume ls --json` and the console's /api/volumes.</summary>
public sealed record VolumeView(string Name, ulong SizeBytes, uint Replicas, ulong Epoch, string Directory, string LeaseHolder, IReadOnlyList<string> Readers,
    VolumeHealthView Health)
{
    public static VolumeView Of(VolumeInfo info) => new(info.Name, info.SizeBytes, info.Replicas, info.Epoch, info.Directory, info.LeaseHolder,
        info.Readers.ToList(), VolumeHealthView.Of(info.Health));
}

/// <summary>The document of `feitian volume ls --json` and /api/volumes.</summary>
public sealed record VolumeListView(IReadOnlyList<VolumeView> Volumes)
{
    public static VolumeListView Of(IEnumerable<VolumeInfo> volumes) =>
        new(volumes.OrderBy(v => v.Name, StringComparer.Ordinal).Select(VolumeView.Of).ToList());
}

/// <summary>A snapshot in `feitian snapshot ls --json` and /api/snapshots.</summary>
public sealed record SnapshotView(string Name, string Volume, long SizeBytes, DateTimeOffset CreatedAt, bool ReadyToUse)
{
    public static SnapshotView Of(Raf.SnapshotRecord r) => new(r.Name, r.Volume, r.SizeBytes, r.CreatedAt, r.ReadyToUse);
}

public sealed record SnapshotListView(IReadOnlyList<SnapshotView> Snapshots);
