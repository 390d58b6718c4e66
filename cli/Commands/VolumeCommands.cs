using System.ComponentModel;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

public class VolumeNameSettings : ClusterSettings
{
    [CommandArgument(0, "<NAME>")]
    public string Name { get; init; } = "";
}

public sealed class VolumeSizeSettings : VolumeNameSettings
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

public sealed record VolumeView(string Name, ulong SizeBytes, uint Replicas, ulong Epoch, string Directory)
{
    public static VolumeView Of(VolumeInfo info) => new(info.Name, info.SizeBytes, info.Replicas, info.Epoch, info.Directory);
}

public sealed class VolumeCreateCommand : AsyncCommand<VolumeSizeSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, VolumeSizeSettings settings, CancellationToken cancellationToken)
    {
        var request = new CreateVolumeRequest { Name = settings.Name, SizeBytes = settings.SizeBytes(), Replicas = settings.Replicas };
        var info = await settings.CallMasterAsync("create volume", (m, o) => m.CreateVolumeAsync(request, o).ResponseAsync, cancellationToken);
        Console.Out.WriteLine($"volume {info.Name} created: {ByteSize.Format((long)info.SizeBytes)}, {info.Replicas} replicas");
        return 0;
    }
}

public sealed class VolumeListCommand : AsyncCommand<JsonFlagSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, JsonFlagSettings settings, CancellationToken cancellationToken)
    {
        var list = await settings.CallMasterAsync("list volumes", (m, o) => m.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, cancellationToken);
        var volumes = list.Volumes.OrderBy(v => v.Name, StringComparer.Ordinal).Select(VolumeView.Of).ToList();
        if (settings.Json)
        {
            JsonOutput.Write(new { volumes });
            return 0;
        }
        var table = new Table().AddColumns("name", "size", "replicas");
        foreach (var volume in volumes)
        {
            table.AddRow(volume.Name, ByteSize.Format((long)volume.SizeBytes), volume.Replicas.ToString());
        }
        AnsiConsole.Write(table);
        return 0;
    }
}

public sealed class VolumeRemoveCommand : AsyncCommand<VolumeNameSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, VolumeNameSettings settings, CancellationToken cancellationToken)
    {
        await settings.CallMasterAsync("delete volume", (m, o) => m.DeleteVolumeAsync(new DeleteVolumeRequest { Name = settings.Name }, o).ResponseAsync, cancellationToken);
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
        Console.Out.WriteLine($"volume {info.Name} is now {ByteSize.Format((long)info.SizeBytes)}");
        return 0;
    }
}
