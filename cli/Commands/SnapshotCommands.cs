using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Raf;
using FeitianK8s.Core.Views;
using Microsoft.Extensions.Logging.Abstractions;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public sealed class SnapshotCreateSettings : ClusterSettings
{
    [CommandArgument(0, "<VOLUME>")]
    public string Volume { get; init; } = "";

    [CommandOption("--name <SNAP>")]
    [Description("Snapshot name, unique in the cluster (a DNS-1123 subdomain).")]
    public string? Name { get; init; }

    public override ValidationResult Validate() =>
        string.IsNullOrWhiteSpace(Name) ? ValidationResult.Error("--name is required, e.g. --name before-upgrade") : ValidationResult.Success();
}

public sealed class SnapshotListSettings : ClusterSettings
{
    [CommandOption("--volume <VOLUME>")]
    [Description("Only the snapshots of this volume.")]
    public string? Volume { get; init; }

    [CommandOption("--json")]
    [Description("Print JSON instead of a table.")]
    public bool Json { get; init; }
}

public sealed class SnapshotNameSettings : ClusterSettings
{
    [CommandArgument(0, "<SNAP>")]
    public string Name { get; init; } = "";
}

/// <summary>Opens what snapshot and clone commands need: the file system and <see cref="VolumeSnapshots"/> over it.</summary>
public static class SnapshotClient
{
    public static async Task<T> RunAsync<T>(ClusterSettings settings, Func<VolumeSnapshots, Task<T>> action)
    {
        using var fs = settings.ConnectFileSystem();
        try
        {
            return await action(new VolumeSnapshots(fs, fs.Master, NullLogger.Instance));
        }
        catch (SnapshotException e)
        {
            throw new CliException(e.Message);
        }
    }
}

public sealed class SnapshotCreateCommand : AsyncCommand<SnapshotCreateSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, SnapshotCreateSettings settings, CancellationToken cancellationToken)
    {
        // The volume's engine (if one has it open) freezes its index: that may wait for its next group commit.
        var snapshot = await WorkProgress.RunAsync($"snapshot {settings.Name} of {settings.Volume}",
            () => SnapshotClient.RunAsync(settings, s => s.CreateAsync(settings.Volume, settings.Name!, cancellationToken)));
        Console.Out.WriteLine($"snapshot {snapshot.Name} of volume {snapshot.Volume} created ({ByteSize.Human(snapshot.SizeBytes)})");
        return 0;
    }
}

public sealed class SnapshotListCommand : AsyncCommand<SnapshotListSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, SnapshotListSettings settings, CancellationToken cancellationToken)
    {
        var list = await SnapshotClient.RunAsync(settings, s => s.ListAsync(settings.Volume, cancellationToken));
        var snapshots = list.Select(SnapshotView.Of).ToList();
        if (settings.Json)
        {
            JsonOutput.Write(new SnapshotListView(snapshots));
            return 0;
        }
        var table = new Table().AddColumns("name", "volume", "size", "created", "ready");
        foreach (var s in snapshots)
        {
            table.AddRow(s.Name, s.Volume, ByteSize.Human(s.SizeBytes), s.CreatedAt.ToString("u", System.Globalization.CultureInfo.InvariantCulture), s.ReadyToUse ? "yes" : "no");
        }
        AnsiConsole.Write(table);
        return 0;
    }
}

public sealed class SnapshotRemoveCommand : AsyncCommand<SnapshotNameSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, SnapshotNameSettings settings, CancellationToken cancellationToken)
    {
        await SnapshotClient.RunAsync(settings, async s =>
        {
            await s.RemoveAsync(settings.Name, cancellationToken);
            return 0;
        });
        Console.Out.WriteLine($"snapshot {settings.Name} removed (its space is freed by the volume's next GC pass)");
        return 0;
    }
}
