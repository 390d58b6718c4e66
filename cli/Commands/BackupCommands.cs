using System.ComponentModel;
using System.Globalization;
using FeitianK8s.Cli.Infrastructure;
using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Raf;
using FeitianK8s.Core.Views;
using Microsoft.Extensions.Logging.Abstractions;
using Spectre.Console;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli.Commands;

/// <summary>Where backups go: an S3-compatible target; credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY only.</summary>
public class BackupTargetSettings : ClusterSettings
{
    [CommandOption("--target <URL>")]
    [Description("Backup target: s3://BUCKET[[/PREFIX]] (the bucket must exist).")]
    public string? Target { get; init; }

    [CommandOption("--endpoint <URL>")]
    [Description("S3-compatible endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com (path-style requests).")]
    public string? Endpoint { get; init; }

    [CommandOption("--region <R>")]
    [Description("Region to sign requests for (default us-east-1).")]
    public string Region { get; init; } = BackupStoreOptions.DefaultRegion;

    public override ValidationResult Validate() =>
        string.IsNullOrWhiteSpace(Target) ? ValidationResult.Error("--target is required, e.g. --target s3://backups/cluster-a")
        : string.IsNullOrWhiteSpace(Endpoint) ? ValidationResult.Error("--endpoint is required, e.g. --endpoint http://127.0.0.1:9000")
        : ValidationResult.Success();

    public BackupStore OpenStore() => BackupStore.Open(BackupTarget.Parse(Target), new BackupStoreOptions(Endpoint!, Region));
}

public sealed class BackupCreateSettings : BackupTargetSettings
{
    [CommandArgument(0, "<SNAP>")]
    public string Snapshot { get; init; } = "";

    [CommandOption("--json")]
    [Description("Print the backup as JSON.")]
    public bool Json { get; init; }
}

public sealed class BackupListSettings : BackupTargetSettings
{
    [CommandOption("--json")]
    [Description("Print JSON instead of a table.")]
    public bool Json { get; init; }
}

public sealed class BackupRestoreSettings : BackupTargetSettings
{
    [CommandArgument(0, "<BACKUP_ID>")]
    public string BackupId { get; init; } = "";

    [CommandOption("--volume <NAME>")]
    [Description("Name of the new volume to restore into.")]
    public string? Volume { get; init; }

    [CommandOption("--replicas <N>")]
    [Description("Replica count of the new volume (default: the cluster's, as `volume create`).")]
    public uint Replicas { get; init; }

    public override ValidationResult Validate() =>
        string.IsNullOrWhiteSpace(Volume) ? ValidationResult.Error("--volume is required, e.g. --volume restored-data") : base.Validate();
}

public sealed class BackupIdSettings : BackupTargetSettings
{
    [CommandArgument(0, "<BACKUP_ID>")]
    public string BackupId { get; init; } = "";
}

public sealed class BackupGcSettings : BackupTargetSettings
{
    [CommandOption("--grace <DURATION>")]
    [Description("Keep unreferenced blocks younger than this, e.g. 30m, 2h, 1d (default 1h; 0 frees every unreferenced block).")]
    public string Grace { get; init; } = "1h";

    [CommandOption("--json")]
    [Description("Print the result as JSON.")]
    public bool Json { get; init; }

    public override ValidationResult Validate() =>
        DurationText.TryParse(Grace, out _) ? base.Validate() : ValidationResult.Error($"--grace '{Grace}' is not a duration, e.g. 30m, 2h or 1d");
}

/// <summary>Runs a backup operation: maps its errors to one-line CLI errors and shows progress.</summary>
public static class BackupClient
{
    public static async Task<T> RunAsync<T>(Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (BackupException e)
        {
            throw new CliException(e.Message);
        }
        catch (SnapshotException e)
        {
            throw new CliException(e.Message);
        }
    }

    /// <summary>
    /// A Spectre.Console progress bar on stderr when stderr is a terminal (stdout may be piped, e.g. `--json | jq`);
    /// otherwise plain lines on stderr (`progress: DONE/TOTAL blocks, BYTES bytes VERB`) at every 5% and at the end.
    /// Stdout stays for results.
    /// </summary>
    public static async Task<T> WithProgressAsync<T>(string title, string verb, Func<IProgress<BackupProgress>, Task<T>> action)
    {
        if (!Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return await console.Progress()
                .AutoClear(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask(Markup.Escape(title), maxValue: 1);
                    return await action(new SyncProgress(p =>
                    {
                        task.MaxValue = Math.Max(1, p.BlocksTotal);
                        task.Value = p.BlocksDone;
                        task.Description = Markup.Escape($"{title} ({ByteSize.Format(p.Bytes)} {verb})");
                    }));
                });
        }
        long lastStep = -1;
        return await action(new SyncProgress(p =>
        {
            var step = p.BlocksTotal == 0 ? 20 : p.BlocksDone * 20 / p.BlocksTotal;
            if (step != lastStep)
            {
                lastStep = step;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"progress: {p.BlocksDone}/{p.BlocksTotal} blocks, {p.Bytes} bytes {verb}"));
            }
        }));
    }

    /// <summary>Reports synchronously under a lock, in the order the work reported (unlike <see cref="Progress{T}"/>).</summary>
    private sealed class SyncProgress(Action<BackupProgress> report) : IProgress<BackupProgress>
    {
        private readonly Lock _gate = new();

        public void Report(BackupProgress value)
        {
            lock (_gate)
            {
                report(value);
            }
        }
    }
}

public sealed class BackupCreateCommand : AsyncCommand<BackupCreateSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, BackupCreateSettings settings, CancellationToken cancellationToken)
    {
        var manifest = await BackupClient.RunAsync(async () =>
        {
            using var store = settings.OpenStore();
            using var fs = settings.ConnectFileSystem();
            var uploader = new BackupUploader(store, fs, fs.Master, NullLogger.Instance);
            return await BackupClient.WithProgressAsync($"backup of {settings.Snapshot}", "sent",
                progress => uploader.BackUpAsync(settings.Snapshot, progress, cancellationToken));
        });
        if (settings.Json)
        {
            JsonOutput.Write(BackupView.Of(manifest));
            return 0;
        }
        Console.Out.WriteLine($"backup {manifest.Id} of snapshot {manifest.Snapshot} (volume {manifest.Volume}, {ByteSize.Format(manifest.SizeBytes)}) stored in {settings.Target}: {ByteSize.Format(manifest.UploadedBytes)} sent");
        return 0;
    }
}

public sealed class BackupListCommand : AsyncCommand<BackupListSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, BackupListSettings settings, CancellationToken cancellationToken)
    {
        var (backups, unreadable) = await BackupClient.RunAsync(async () =>
        {
            using var store = settings.OpenStore();
            return await new BackupCatalog(store).ListAsync(cancellationToken);
        });
        foreach (var bad in unreadable)
        {
            Console.Error.WriteLine($"feitian: warning: {bad.Reason}");
        }
        var list = BackupListView.Of(backups);
        if (settings.Json)
        {
            JsonOutput.Write(list);
            return 0;
        }
        // Ids stay on one line, so that they can be copied from a narrow or redirected console.
        var table = new Table().AddColumns(new TableColumn("id").NoWrap(), new TableColumn("volume"), new TableColumn("snapshot"),
            new TableColumn("size"), new TableColumn("uploaded"), new TableColumn("created"));
        foreach (var b in list.Backups)
        {
            // Names come from the store: escaped, so that a hostile manifest cannot inject console markup.
            table.AddRow(Markup.Escape(b.Id), Markup.Escape(b.Volume), Markup.Escape(b.Snapshot), ByteSize.Format(b.SizeBytes), ByteSize.Format(b.UploadedBytes), b.CreatedAt.ToString("u", CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        return 0;
    }
}

public sealed class BackupRestoreCommand : AsyncCommand<BackupRestoreSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, BackupRestoreSettings settings, CancellationToken cancellationToken)
    {
        var info = await BackupClient.RunAsync(async () =>
        {
            using var store = settings.OpenStore();
            using var fs = settings.ConnectFileSystem();
            var restorer = new BackupRestorer(store, fs, fs.Master, NullLogger.Instance) { Replicas = settings.Replicas };
            return await BackupClient.WithProgressAsync($"restore of {settings.BackupId}", "fetched",
                progress => restorer.RestoreAsync(settings.BackupId, settings.Volume!, progress, cancellationToken));
        });
        Console.Out.WriteLine($"backup {settings.BackupId} restored into volume {info.Name} ({ByteSize.Format((long)info.SizeBytes)}, {info.Replicas} replicas)");
        return 0;
    }
}

public sealed class BackupRemoveCommand : AsyncCommand<BackupIdSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, BackupIdSettings settings, CancellationToken cancellationToken)
    {
        var result = await BackupClient.RunAsync(async () =>
        {
            using var store = settings.OpenStore();
            return await BackupClient.WithProgressAsync($"delete of {settings.BackupId}", "freed",
                progress => new BackupDeleter(store, NullLogger.Instance).DeleteAsync(settings.BackupId, progress, cancellationToken));
        });
        if (result.UploadsInProgress is { } uploads)
        {
            Console.Out.WriteLine($"backup {settings.BackupId} deleted; its {result.KeptForUploads} unshared block objects are kept while {uploads} runs (`feitian backup gc` frees them later)");
            return 0;
        }
        Console.Out.WriteLine($"backup {settings.BackupId} deleted ({result.Deleted} block objects no other backup uses deleted)");
        return 0;
    }
}

/// <summary>`backup gc --json`: what was freed.</summary>
public sealed record BackupGcView(int DeletedBlocks, long DeletedBytes, int KeptYoungBlocks, int StaleMarkersDeleted);

public sealed class BackupGcCommand : AsyncCommand<BackupGcSettings>
{
    public override async Task<int> ExecuteAsync(CommandContext context, BackupGcSettings settings, CancellationToken cancellationToken)
    {
        DurationText.TryParse(settings.Grace, out var grace);
        var result = await BackupClient.RunAsync(async () =>
        {
            using var store = settings.OpenStore();
            return await BackupClient.WithProgressAsync($"gc of {settings.Target}", "freed",
                progress => new BackupCollector(store, NullLogger.Instance) { Grace = grace }.CollectAsync(progress, cancellationToken));
        });
        if (settings.Json)
        {
            JsonOutput.Write(new BackupGcView(result.Deleted, result.DeletedBytes, result.KeptYoung, result.StaleMarkersDeleted));
            return 0;
        }
        Console.Out.WriteLine($"gc of {settings.Target}: {result.Deleted} unreferenced block objects deleted ({ByteSize.Format(result.DeletedBytes)}), {result.KeptYoung} younger than {settings.Grace} kept");
        return 0;
    }
}
