using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class FsPutSettings : ClusterSettings
{
    [CommandArgument(0, "<LOCAL>")]
    public string Local { get; init; } = "";

    [CommandArgument(1, "<PATH>")]
    public string Path { get; init; } = "";

    [CommandOption("--replicas <N>")]
    [Description("Replica count (default: the cluster's).")]
    public int Replicas { get; init; }
}

public sealed class FsPutCommand : AsyncCommand<FsPutSettings>
{
    private const int PieceSize = 4 << 20;

    public override async Task<int> ExecuteAsync(CommandContext context, FsPutSettings settings, CancellationToken cancellationToken)
    {
        if (!File.Exists(settings.Local))
        {
            throw new CliException($"no such local file: {settings.Local}");
        }
        using var fs = settings.ConnectFileSystem();
        await using var source = new FileStream(settings.Local, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        await fs.CreateAsync(settings.Path, settings.Replicas, ct: cancellationToken);
        await using var appender = await fs.OpenForAppendAsync(settings.Path, ct: cancellationToken);
        await TransferProgress.RunAsync($"put {settings.Path}", source.Length, async report =>
        {
            // Two buffers: the next piece is read from disk while the previous one is appended.
            var buffers = new[] { new byte[PieceSize], new byte[PieceSize] };
            Task pending = Task.CompletedTask;
            long done = 0;
            for (var turn = 0; ; turn++)
            {
                var buffer = buffers[turn % 2];
                var read = await source.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
                await pending;
                report(done);
                if (read == 0)
                {
                    break;
                }
                pending = appender.AppendAsync(buffer.AsMemory(0, read), ct: cancellationToken);
                done += read;
            }
        });
        await appender.FlushAsync(cancellationToken);
        await appender.CloseAsync(cancellationToken);
        return 0;
    }
}

public sealed class FsGetSettings : ClusterSettings
{
    [CommandArgument(0, "<PATH>")]
    public string Path { get; init; } = "";

    [CommandArgument(1, "[LOCAL]")]
    [Description("Local file to write; standard output when omitted.")]
    public string? Local { get; init; }
}

public sealed class FsGetCommand : AsyncCommand<FsGetSettings>
{
    private const int PieceSize = 4 << 20;

    public override async Task<int> ExecuteAsync(CommandContext context, FsGetSettings settings, CancellationToken cancellationToken)
    {
        using var fs = settings.ConnectFileSystem();
        await using var reader = await fs.OpenForReadAsync(settings.Path, cancellationToken);
        await using var target = string.IsNullOrEmpty(settings.Local)
            ? Console.OpenStandardOutput()
            : new FileStream(settings.Local, FileMode.Create, FileAccess.Write, FileShare.None, 1);
        var total = (long)((await fs.StatAsync(settings.Path, cancellationToken))?.Length ?? 0);
        await TransferProgress.RunAsync($"get {settings.Path}", total, async report =>
        {
            var buffer = new byte[PieceSize];
            long offset = 0;
            while (true)
            {
                var read = await reader.ReadAsync(offset, buffer, cancellationToken);
                if (read == 0)
                {
                    break;
                }
                await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                offset += read;
                report(offset);
            }
        });
        return 0;
    }
}

public sealed class FsListSettings : ClusterSettings
{
    [CommandArgument(0, "[PATH]")]
    public string Path { get; init; } = "/";

    [CommandOption("-r|--recursive")]
    public bool Recursive { get; init; }

    [CommandOption("--json")]
    public bool Json { get; init; }
}

public sealed class FsListCommand : AsyncCommand<FsListSettings>
{
    public sealed record EntryView(string Path, bool Directory, long Length);

    public override async Task<int> ExecuteAsync(CommandContext context, FsListSettings settings, CancellationToken cancellationToken)
    {
        using var fs = settings.ConnectFileSystem();
        var entries = await fs.ListAsync(settings.Path, settings.Recursive, cancellationToken);
        if (settings.Json)
        {
            JsonOutput.Write(new { entries = entries.Select(e => new EntryView(e.Path, e.IsDirectory, e.Length)) });
            return 0;
        }
        foreach (var entry in entries)
        {
            Console.Out.WriteLine(entry.IsDirectory ? $"{"dir",12}  {entry.Path}/" : $"{entry.Length,12}  {entry.Path}");
        }
        return 0;
    }
}

public sealed class FsPathSettings : ClusterSettings
{
    [CommandArgument(0, "<PATH>")]
    public string Path { get; init; } = "";

    [CommandOption("--json")]
    public bool Json { get; init; }
}

public sealed class FsRemoveCommand : AsyncCommand<FsPathSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, FsPathSettings settings, CancellationToken cancellationToken)
    {
        using var fs = settings.ConnectFileSystem();
        await fs.DeleteAsync(settings.Path, ct: cancellationToken);
        return 0;
    }
}

public sealed class FsStatCommand : AsyncCommand<FsPathSettings>
{
    public sealed record ReplicaView(string ChunkServer, string Node, string Rack, bool Bad);

    public sealed record ChunkView(ulong Id, long Length, bool Sealed, bool PlacementDegraded, IReadOnlyList<ReplicaView> Replicas);

    public sealed record FileView(string Path, long Length, int Replicas, IReadOnlyList<ChunkView> Chunks);

    public override async Task<int> ExecuteAsync(CommandContext context, FsPathSettings settings, CancellationToken cancellationToken)
    {
        using var fs = settings.ConnectFileSystem();
        var info = await fs.StatAsync(settings.Path, cancellationToken) ?? throw new CliException($"no such file: {settings.Path}");
        var view = new FileView(info.Path, info.Length, info.Replicas, info.Chunks
            .Select(c => new ChunkView(c.Id, c.Length, c.Sealed, c.PlacementDegraded,
                c.Replicas.Select(r => new ReplicaView(r.ChunkServerId, r.Node, r.Rack, r.Bad)).ToList()))
            .ToList());
        if (settings.Json)
        {
            JsonOutput.Write(view);
            return 0;
        }
        Console.Out.WriteLine($"{view.Path}: {view.Length} bytes ({ByteSize.Human(view.Length)}), {view.Chunks.Count} chunks, {view.Replicas} replicas");
        var table = new Table().AddColumns("chunk", "length", "sealed", "replicas (node/rack)");
        foreach (var chunk in view.Chunks)
        {
            var replicas = string.Join(", ", chunk.Replicas.Select(r => $"{r.Node}/{r.Rack}{(r.Bad ? " [red]bad[/]" : "")}"));
            table.AddRow(chunk.Id.ToString(), chunk.Length.ToString(), chunk.Sealed ? "yes" : "no", replicas + (chunk.PlacementDegraded ? " [yellow](degraded)[/]" : ""));
        }
        AnsiConsole.Write(table);
        return 0;
    }
}
