using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Views;
using FeitianK8s.Proto.Master;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public class VolumeNameSettings : ClusterSettings
{
    [CommandArgument(0, "<NAME>")]
    public string Name { get; init; } = "";
}

public class VolumeSizeSettings : VolumeNameSettings
{
    [CommandOption("--size <SIZE>")]
    [Description("Size with a unit: KiB, MiB, GiB or TiB (a multiple of 4KiB).")]
    public string? Size { get; init; }

    [CommandOption("--replicas <N>")]
    [Description("Replica count (default 3).")]
    public uint Replicas { get; init; }

    public ulong SizeBytes() => string.IsNullOrWhiteSpace(Size)
        ? throw new CliException("--size is required, e.g. --size 1GiB")
        : (ulong)ByteSize.Parse(Size);
}

public sealed class VolumeCreateSettings : VolumeSizeSettings
{
    [CommandOption("--from-snapshot <SNAP>")]
    [Description("Create the volume with the content of this snapshot (a clone sharing its data; --size may make it bigger).")]
    public string? FromSnapshot { get; init; }

    [CommandOption("--from-volume <SOURCE>")]
    [Description("Create the volume with the current content of SOURCE (a clone sharing its data; --size may make it bigger).")]
    public string? FromVolume { get; init; }

    public override Spectre.Console.ValidationResult Validate() =>
        FromSnapshot is not null && FromVolume is not null
            ? Spectre.Console.ValidationResult.Error("--from-snapshot and --from-volume exclude each other")
            : Spectre.Console.ValidationResult.Success();
}

public sealed class VolumeCreateCommand : AsyncCommand<VolumeCreateSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, VolumeCreateSettings settings, CancellationToken cancellationToken)
    {
        long? size = string.IsNullOrWhiteSpace(settings.Size) ? null : (long)settings.SizeBytes();
        if (settings.FromSnapshot is { } snapshot)
        {
            var clone = await WorkProgress.RunAsync($"volume {settings.Name} from snapshot {snapshot}",
                () => SnapshotClient.RunAsync(settings, s => s.CreateVolumeFromSnapshotAsync(settings.Name, snapshot, size, cancellationToken)));
            Console.Out.WriteLine($"volume {clone.Name} created from snapshot {snapshot}: {ByteSize.Human(clone.SizeBytes)}, {clone.Replicas} replicas");
            return 0;
        }
        if (settings.FromVolume is { } source)
        {
            var clone = await WorkProgress.RunAsync($"volume {settings.Name} from volume {source}",
                () => SnapshotClient.RunAsync(settings, s => s.CreateVolumeFromVolumeAsync(settings.Name, source, size, cancellationToken)));
            Console.Out.WriteLine($"volume {clone.Name} created from volume {source}: {ByteSize.Human(clone.SizeBytes)}, {clone.Replicas} replicas");
            return 0;
        }
        var request = new CreateVolumeRequest { Name = settings.Name, SizeBytes = settings.SizeBytes(), Replicas = settings.Replicas };
        var info = await settings.CallMasterAsync("create volume", (m, o) => m.CreateVolumeAsync(request, o).ResponseAsync, cancellationToken);
        Console.Out.WriteLine($"volume {info.Name} created: {ByteSize.Human(info.SizeBytes)}, {info.Replicas} replicas");
        return 0;
    }
}

public sealed class VolumeListCommand : AsyncCommand<JsonFlagSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, JsonFlagSettings settings, CancellationToken cancellationToken)
    {
        var list = await settings.CallMasterAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, cancellationToken);
        var view = VolumeListView.Of(list.Volumes);
        if (settings.Json)
        {
            JsonOutput.Write(view);
            return 0;
        }
        var table = new Table().AddColumns("name", "size", "replicas", "health");
        foreach (var volume in view.Volumes)
        {
            table.AddRow(Markup.Escape(volume.Name), ByteSize.Human(volume.SizeBytes), volume.Replicas.ToString(), volume.Health.State);
        }
        AnsiConsole.Write(table);
        return 0;
    }
}

public sealed class VolumeRemoveCommand : AsyncCommand<VolumeNameSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, VolumeNameSettings settings, CancellationToken cancellationToken)
    {
        // Refused while clones share the volume's data or snapshots of it exist.
        await WorkProgress.RunAsync($"delete volume {settings.Name}", () => SnapshotClient.RunAsync(settings, async s =>
        {
            await s.DeleteVolumeAsync(settings.Name, cancellationToken);
            return 0;
        }));
        Console.Out.WriteLine($"volume {settings.Name} deleted");
        return 0;
    }
}

public sealed class VolumeResizeCommand : AsyncCommand<VolumeSizeSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, VolumeSizeSettings settings, CancellationToken cancellationToken)
    {
        var request = new ResizeVolumeRequest { Name = settings.Name, SizeBytes = settings.SizeBytes() };
        var info = await settings.CallMasterAsync("resize volume", (m, o) => m.ResizeVolumeAsync(request, o).ResponseAsync, cancellationToken);
        Console.Out.WriteLine($"volume {info.Name} is now {ByteSize.Human(info.SizeBytes)}");
        return 0;
    }
}
