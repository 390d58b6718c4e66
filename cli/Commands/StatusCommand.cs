using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class StatusCommand : AsyncCommand<JsonFlagSettings>
{
    public sealed record MasterView(string Address, string Role);

    public sealed record ChunkServerView(string Id, string Node, string Rack, bool Alive, ulong CapacityBytes, ulong UsedBytes, ulong Chunks, string Address);

    public sealed record StatusView(IReadOnlyList<MasterView> Masters, IReadOnlyList<ChunkServerView> ChunkServers, ulong DegradedChunks, ulong BadReplicas);

    public override async Task<int> ExecuteAsync(CommandContext context, JsonFlagSettings settings, CancellationToken cancellationToken)
    {
        var status = await settings.ConnectMaster().GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: cancellationToken);
        var view = new StatusView(
            status.Masters.Select(m => new MasterView(m.Address, m.Role)).ToList(),
            status.ChunkServers.OrderBy(c => c.Node, StringComparer.Ordinal)
                .Select(c => new ChunkServerView(c.Id, c.Node, c.Rack, c.Alive, c.CapacityBytes, c.UsedBytes, c.Chunks, c.Address)).ToList(),
            status.DegradedChunks,
            status.BadReplicas);
        if (settings.Json)
        {
            JsonOutput.Write(view);
            return 0;
        }
        var masters = new Table().AddColumns("master", "role");
        foreach (var master in view.Masters)
        {
            masters.AddRow(master.Address, master.Role);
        }
        AnsiConsole.Write(masters);
        var servers = new Table().AddColumns("chunk server", "node", "rack", "alive", "used", "capacity", "chunks", "address");
        foreach (var server in view.ChunkServers)
        {
            servers.AddRow(server.Id, server.Node, server.Rack, server.Alive ? "yes" : "[red]no[/]",
                ByteSize.Format((long)server.UsedBytes), ByteSize.Format((long)server.CapacityBytes), server.Chunks.ToString(), server.Address);
        }
        AnsiConsole.Write(servers);
        AnsiConsole.MarkupLine($"degraded chunks: {view.DegradedChunks}, bad replicas: {view.BadReplicas}");
        return 0;
    }
}
