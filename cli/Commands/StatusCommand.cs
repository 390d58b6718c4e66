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

    [CommandOption("--wide")]
    [Description("Show full ids and the servers' addresses (wider than 80 columns).")]
    public bool Wide { get; init; }

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
            var masterViews = await MasterStates.CollectAsync(settings.ResolveMasters(), cancellationToken, settings.ResolveTls());
            var leader = masterViews.FirstOrDefault(m => m.Role == "leader")?.Address;
            if (leader is null)
            {
                // "Unreachable" may really be a TLS mismatch (no certificate at a TLS server, or TLS at a plain one): say which.
                var hints = await Core.Security.TlsProbe.HintsAsync(masterViews.Where(m => m.Role == "unreachable").Select(m => m.Address),
                    settings.ResolveTls() is not null, cancellationToken);
                throw new CliException($"no master is the leader right now ({string.Join(", ", masterViews.Select(m => $"{m.Address}: {m.Role}"))})"
                    + (hints.Count > 0 ? ": " + string.Join("; ", hints) : ""));
            }
            using var channel = GrpcChannels.Create(leader, tls: settings.ResolveTls());
            var status = await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetClusterStatusAsync(new GetClusterStatusRequest(),
                deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: cancellationToken);
            return StatusViews.Build(masterViews, status);
        }
        if (settings.Wide && Console.IsOutputRedirected)
        {
            // Piped or saved: no terminal to fit, so wide rows stay whole.
            AnsiConsole.Profile.Width = 240;
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
                AnsiConsole.Write(Render(view, null, settings.Wide));
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
                AnsiConsole.Write(Render(view, mostRemaining, settings.Wide));
            }
            if (view.Healthy)
            {
                return 0;
            }
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }
    }

    /// <summary>Tables that fit 80 columns: short ids and host names, sizes in binary units; --wide adds full ids and addresses.</summary>
    public static Rows Render(StatusView view, ulong? mostRemaining, bool wide)
    {
        var masters = new Table().Border(TableBorder.Rounded).AddColumns("master", "role", "term", "commit", "lag");
        foreach (var m in view.Masters)
        {
            masters.AddRow(Markup.Escape(wide ? m.Address : ShortAddress(m.Address)), m.Role == "unreachable" ? "[red]unreachable[/]" : m.Role,
                m.Term.ToString(), m.CommitIndex.ToString(), m.Lag?.ToString() ?? "-");
        }
        var servers = new Table().Border(TableBorder.Rounded).AddColumns("id", "node", "rack", "state", "used", "capacity", "chunks", "scrub");
        if (wide)
        {
            servers.AddColumn("address");
        }
        foreach (var s in view.ChunkServers)
        {
            var row = new List<string>
            {
                Markup.Escape(wide ? s.Id : ShortId(s.Id)), Markup.Escape(wide ? s.Node : Shorten(s.Node, 14)), Markup.Escape(wide ? s.Rack : Shorten(s.Rack, 12)),
                s.Dead ? "[red]dead[/]" : s.Alive ? "up" : "[yellow]down[/]",
                ByteSize.Human(s.UsedBytes), ByteSize.Human(s.CapacityBytes), s.Chunks.ToString(),
                s.Scrub is null ? "off" : s.Scrub.BadFound > 0 ? $"[red]{s.Scrub.BadFound} bad[/]" : ByteSize.Human(s.Scrub.BytesVerified),
            };
            if (wide)
            {
                row.Add(Markup.Escape(s.Address));
            }
            servers.AddRow(row.ToArray());
        }
        var eta = view.Eta is { } t ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : "-";
        var summary = new Markup(
            $"degraded chunks: {view.DegradedChunks}, under-replicated: {view.UnderReplicatedChunks}, bad replicas: {view.BadReplicas}\n" +
            $"rebuild: {ByteSize.Human(view.Rebuild.BytesRemaining)} left, {ByteSize.Human(view.Rebuild.BytesPerSecond)}/s, " +
            $"{view.Rebuild.CopiesActive} copies, ETA {eta}" + (view.Healthy ? "  [green]healthy[/]" : ""));
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

    /// <summary>"cs-8dae91b051f5" → "cs-8dae91b" (unique enough to tell servers apart; --wide shows all).</summary>
    public static string ShortId(string id) => id.Length > 10 ? id[..10] : id;

    /// <summary>"http://feitian-master-0.feitian-master.ns.svc:9000" → "feitian-master-0:9000"; IP addresses stay whole.</summary>
    public static string ShortAddress(string address)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri))
        {
            return Shorten(address, 24);
        }
        var host = uri.HostNameType == UriHostNameType.Dns ? uri.Host.Split('.')[0] : uri.Host;
        return Shorten(uri.IsDefaultPort ? host : $"{host}:{uri.Port}", 24);
    }

    private static string Shorten(string text, int max) => text.Length <= max ? text : text[..(max - 1)] + "…";
}
