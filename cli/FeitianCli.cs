using System.Runtime.InteropServices;
using FeitianK8s.Cli.Commands;
using FeitianK8s.Cli.Infrastructure;
using Spectre.Console.Cli;

namespace FeitianK8s.Cli;

/// <summary>Composes the `feitian` command tree; failures end as one line on stderr and a non-zero exit.</summary>
public static class FeitianCli
{
    public static async Task<int> RunAsync(string[] args)
    {
        using var stop = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; stop.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; stop.Cancel(); });

        var app = new CommandApp();
        app.Configure(Configure);
        try
        {
            return await app.RunAsync(args, stop.Token);
        }
        catch (Exception error)
        {
            return CliErrors.Report(error);
        }
    }

    private static void Configure(IConfigurator config)
    {
        config.SetApplicationName("feitian");
        config.PropagateExceptions();
        // A typo in an option must not silently start a cluster or run a command: refuse it (exit 2).
        config.UseStrictParsing();
        config.AddCommand<UpCommand>("up").WithDescription("Run a local cluster (master, chunk servers, NBD) on 127.0.0.1 in the foreground.");
        config.AddCommand<ConsoleCommand>("console").WithDescription("Open the web console: a local HTTP server with a token in its printed URL, answering from the masters with this CLI's certificate.");
        config.AddCommand<StatusCommand>("status").WithDescription("Show masters and chunk servers.");
        config.AddBranch("fs", fs =>
        {
            fs.SetDescription("Files of the Pangu file system.");
            fs.AddCommand<FsPutCommand>("put").WithDescription("Copy a local file into the file system.");
            fs.AddCommand<FsGetCommand>("get").WithDescription("Copy a file out of the file system.");
            fs.AddCommand<FsListCommand>("ls").WithDescription("List a directory.");
            fs.AddCommand<FsRemoveCommand>("rm").WithDescription("Delete a file.");
            fs.AddCommand<FsStatCommand>("stat").WithDescription("Show a file's chunks and replicas.");
        });
        config.AddBranch("volume", volume =>
        {
            volume.SetDescription("RAF block volumes.");
            volume.AddCommand<VolumeCreateCommand>("create").WithDescription("Create a volume.");
            volume.AddCommand<VolumeListCommand>("ls").WithDescription("List volumes.");
            volume.AddCommand<VolumeRemoveCommand>("rm").WithDescription("Delete a volume and its data.");
            volume.AddCommand<VolumeResizeCommand>("resize").WithDescription("Grow a volume.");
        });
        config.AddBranch("snapshot", snapshot =>
        {
            snapshot.SetDescription("Point-in-time snapshots of volumes (instant, sharing data with the volume).");
            snapshot.AddCommand<SnapshotCreateCommand>("create").WithDescription("Snapshot a volume: feitian snapshot create VOLUME --name SNAP.");
            snapshot.AddCommand<SnapshotListCommand>("ls").WithDescription("List snapshots.");
            snapshot.AddCommand<SnapshotRemoveCommand>("rm").WithDescription("Remove a snapshot.");
        });
        config.AddBranch("backup", backup =>
        {
            backup.SetDescription("Incremental backups of snapshots to an S3-compatible object store (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).");
            backup.AddCommand<BackupCreateCommand>("create").WithDescription("Back a snapshot up: feitian backup create SNAP --target s3://BUCKET[[/PREFIX]] --endpoint URL.");
            backup.AddCommand<BackupListCommand>("ls").WithDescription("List the backups in a target.");
            backup.AddCommand<BackupRestoreCommand>("restore").WithDescription("Restore a backup into a new volume: feitian backup restore BACKUP_ID --volume NAME --target ... --endpoint ....");
            backup.AddCommand<BackupRemoveCommand>("rm").WithDescription("Delete a backup and the blocks no other backup uses.");
            backup.AddCommand<BackupGcCommand>("gc").WithDescription("Delete block objects no backup references (left by killed uploads), older than --grace.");
        });
    }
}
