using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Views;
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
            return StatusViews.Build(masterViews, status);
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
