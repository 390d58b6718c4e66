using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class StatusSettings : ClusterSettings
{
    [CommandOption("--json")]
    [Description("Print JSON instead of a table.")]
    public bool Json { get; init; }

    [CommandOption("--watch")]
    [Description("Redraw every second, with a rebuild progress bar, until the cluster is healthy (no degraded or under-replicated chunk, no copy running).")]
    public bool Watch { get; init; }
}

public sealed class StatusCommand : AsyncCommand<StatusSettings>
{
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

    public static StatusView ToView(IReadOnlyList<MasterView> masters, ClusterStatus status) => new(
        masters,
        status.ChunkServers.OrderBy(c => c.Node, StringComparer.Ordinal)
            .Select(c => new ChunkServerView(c.Id, c.Node, c.Rack, c.Alive, c.CapacityBytes, c.UsedBytes, c.Chunks, c.Address, c.Dead,
                c.Scrub is { } s ? new ScrubView(s.LastCompletedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(s.LastCompletedUnixMs) : null, s.BytesVerified, s.BadFound) : null))
            .ToList(),
        status.DegradedChunks,
        status.BadReplicas,
        status.UnderReplicatedChunks,
        new RebuildView(status.Rebuild?.BytesRemaining ?? 0, status.Rebuild?.BytesPerSecond ?? 0, status.Rebuild?.CopiesActive ?? 0));

    public override async Task<int> ExecuteAsync(CommandContext context, StatusSettings settings, CancellationToken cancellationToken)
    {
        async Task<StatusView> FetchAsync()
        {
            // Every master reports its own Raft state; the cluster's state comes from the leader.
            var masterViews = await MasterStates.CollectAsync(settings.ResolveMasters(), cancellationToken);
            var leader = masterViews.FirstOrDefault(m => m.Role == "leader")?.Address
                ?? throw new CliException($"no master is the leader right now ({string.Join(", ", masterViews.Select(m => $"{m.Address}: {m.Role}"))})");
            using var channel = GrpcChannels.Create(leader);
            var status = await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetClusterStatusAsync(new GetClusterStatusRequest(),
                deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken);
            return ToView(masterViews, status);
        }
        if (!settings.Watch)
        {
            var view = await FetchAsync();
            if (settings.Json)
            {
                JsonOutput.Write(view);
            }
            else
            {
                AnsiConsole.Write(Render(view, null));
            }
            return 0;
        }
        ulong mostRemaining = 0;
        while (true)
        {
            var view = await FetchAsync();
            mostRemaining = Math.Max(mostRemaining, view.Rebuild.BytesRemaining);
            if (settings.Json)
            {
                JsonOutput.Write(view);
            }
            else
            {
                AnsiConsole.Clear();
                AnsiConsole.Write(Render(view, mostRemaining));
            }
            if (view.Healthy)
            {
                return 0;
            }
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }
    }

    private static Rows Render(StatusView view, ulong? mostRemaining)
    {
        var masters = new Table().AddColumns("master", "role", "term", "commit index", "lag");
        foreach (var m in view.Masters)
        {
            masters.AddRow(m.Address, m.Role == "unreachable" ? "[red]unreachable[/]" : m.Role,
                m.Term.ToString(), m.CommitIndex.ToString(), m.Lag?.ToString() ?? "-");
        }
        var servers = new Table().AddColumns("chunk server", "node", "rack", "alive", "used", "capacity", "chunks", "scrubbed", "scrub bad", "address");
        foreach (var s in view.ChunkServers)
        {
            servers.AddRow(s.Id, s.Node, s.Rack, s.Dead ? "[red]dead[/]" : s.Alive ? "yes" : "[yellow]no[/]",
                ByteSize.Format((long)s.UsedBytes), ByteSize.Format((long)s.CapacityBytes), s.Chunks.ToString(),
                s.Scrub is null ? "off" : ByteSize.Format((long)s.Scrub.BytesVerified), s.Scrub?.BadFound.ToString() ?? "-", s.Address);
        }
        var eta = view.Eta is { } t ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : "-";
        var summary = new Markup(
            $"degraded chunks: {view.DegradedChunks}, under-replicated chunks: {view.UnderReplicatedChunks}, bad replicas: {view.BadReplicas}\n" +
            $"rebuild: {ByteSize.Format((long)view.Rebuild.BytesRemaining)} left, {ByteSize.Format((long)view.Rebuild.BytesPerSecond)}/s, " +
            $"{view.Rebuild.CopiesActive} copies running, ETA {eta}" + (view.Healthy ? "  [green]healthy[/]" : ""));
        var rows = new List<Spectre.Console.Rendering.IRenderable> { masters, servers, summary };
        if (mostRemaining is { } most)
        {
            var done = most == 0 ? 1.0 : 1.0 - (double)view.Rebuild.BytesRemaining / most;
            rows.Add(new BreakdownChart().Width(60).HideTags()
                .AddItem("rebuilt", Math.Round(done * 100, 1), Color.Green)
                .AddItem("left", Math.Round((1 - done) * 100, 1), Color.Grey));
            rows.Add(new Markup($"{done:P0} rebuilt"));
        }
        return new Rows(rows);
    }
}

/// <summary>Asks every master for its own Raft state (GetMasterState); a master that does not answer is "unreachable".</summary>
public static class MasterStates
{
    public static async Task<IReadOnlyList<StatusCommand.MasterView>> CollectAsync(IReadOnlyList<string> addresses, CancellationToken ct)
    {
        var states = await Task.WhenAll(addresses.Select(async address =>
        {
            try
            {
                using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(address);
                var state = await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetMasterStateAsync(new GetMasterStateRequest(),
                    deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: ct);
                return (Address: address, State: state);
            }
            catch (Grpc.Core.RpcException)
            {
                return (Address: address, State: (MasterStatus?)null);
            }
        }));
        var leaderCommit = states.Where(s => s.State?.Role == "leader").Select(s => (ulong?)s.State!.CommitIndex).Max();
        return states.Select(s => s.State is null
                ? new StatusCommand.MasterView(s.Address, "unreachable", 0, 0, 0, null)
                : new StatusCommand.MasterView(s.Address, s.State.Role, s.State.Term, s.State.CommitIndex, s.State.AppliedIndex,
                    leaderCommit is { } commit ? commit - Math.Min(commit, s.State.AppliedIndex) : null))
            .ToList();
    }
}
