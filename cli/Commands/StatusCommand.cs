using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class StatusCommand : AsyncCommand<JsonFlagSettings>
{
    /// <summary>One master: role leader/follower/candidate/unreachable, its Raft term and commit index, and how many entries it is behind the leader (null when no leader answered).</summary>
    public sealed record MasterView(string Address, string Role, ulong Term, ulong CommitIndex, ulong AppliedIndex, ulong? Lag);

    public sealed record ChunkServerView(string Id, string Node, string Rack, bool Alive, ulong CapacityBytes, ulong UsedBytes, ulong Chunks, string Address);

    public sealed record StatusView(IReadOnlyList<MasterView> Masters, IReadOnlyList<ChunkServerView> ChunkServers, ulong DegradedChunks, ulong BadReplicas);

    public override async Task<int> ExecuteAsync(CommandContext context, JsonFlagSettings settings, CancellationToken cancellationToken)
    {
        var masterViews = await MasterStates.CollectAsync(settings.ResolveMasters(), cancellationToken);
        var leader = masterViews.FirstOrDefault(m => m.Role == "leader")?.Address
            ?? throw new CliException($"no master is the leader right now ({string.Join(", ", masterViews.Select(m => $"{m.Address}: {m.Role}"))})");
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(leader);
        var status = await new FeitianK8s.Proto.Master.Master.MasterClient(channel).GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: cancellationToken);
        var view = new StatusView(
            masterViews,
            status.ChunkServers.OrderBy(c => c.Node, StringComparer.Ordinal)
                .Select(c => new ChunkServerView(c.Id, c.Node, c.Rack, c.Alive, c.CapacityBytes, c.UsedBytes, c.Chunks, c.Address)).ToList(),
            status.DegradedChunks,
            status.BadReplicas);
        if (settings.Json)
        {
            JsonOutput.Write(view);
            return 0;
        }
        var masters = new Table().AddColumns("master", "role", "term", "commit index", "lag");
        foreach (var master in view.Masters)
        {
            masters.AddRow(master.Address, master.Role == "unreachable" ? "[red]unreachable[/]" : master.Role,
                master.Term.ToString(), master.CommitIndex.ToString(), master.Lag?.ToString() ?? "-");
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
