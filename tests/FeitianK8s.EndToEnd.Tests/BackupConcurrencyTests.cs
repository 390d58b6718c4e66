using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// `backup create` and `backup rm` at once against one target (a real s3rver): a block the new backup
/// found stored and skipped must never be deleted under it. Each interleaving is forced by pausing one
/// side inside its progress report (the uploader reports first right after it listed the stored
/// blocks; the deleter after each block it deleted), then every backup left is restored and compared.
/// </summary>
public sealed class BackupConcurrencyTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int MiB = 1 << 20;
    private const int Size = 16 * MiB;
    private S3rverProcess _s3 = null!;
    private TestCluster _cluster = null!;
    private PanguClient _fs = null!;
    private byte[] _s1 = [];
    private byte[] _s2 = [];

    public async Task InitializeAsync()
    {
        _s3 = await S3rverProcess.StartAsync(output);
        _cluster = await TestCluster.StartAsync(output, chunkServers: 2, racks: 2);
        _fs = _cluster.CreateClient();
        Environment.SetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable, S3rverProcess.AccessKey);
        Environment.SetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable, S3rverProcess.SecretKey);
        // s3rver keeps objects as files and removes a folder once its last object is deleted; a PUT into that folder at
        // the same moment crashes it (ENOENT, unhandled). Markers come and go in one folder all the time here, and so do
        // manifests when an rm deletes the last backup while a create writes its manifest, so a placeholder (neither a
        // marker nor a manifest: no .json) keeps each folder. A real S3 store has no folders and no such race.
        using (var store = OpenStore())
        {
            await store.PutAsync($"{store.Target.Prefix}markers/.keep", Array.Empty<byte>(), CancellationToken.None);
            await store.PutAsync($"{store.Target.ManifestsPrefix}.keep", Array.Empty<byte>(), CancellationToken.None);
        }

        // s1: 16 data blocks; s2: the same but block 3 changed, so 15 of its 16 blocks are s1's.
        await _fs.Master.CallAsync("create volume", (c, o) => c.CreateVolumeAsync(new CreateVolumeRequest { Name = "race", SizeBytes = Size, Replicas = 1 }, o).ResponseAsync, CancellationToken.None);
        _s1 = TestData.Random(Size, seed: 11);
        _s2 = _s1.ToArray();
        TestData.Random(MiB, seed: 12).CopyTo(_s2, 3 * MiB);
        var snapshots = new VolumeSnapshots(_fs, _fs.Master, Logger("snapshots"));
        await using (var engine = await RafVolume.OpenAsync(_fs, new MasterVolumeCatalog(_fs.Master), "race",
            new RafOptions { Holder = "writer", SegmentSizeBytes = 16 * MiB, GcInterval = null, SnapshotRequestInterval = TimeSpan.FromMilliseconds(100) }, Logger("raf"), CancellationToken.None))
        {
            await engine.WriteAsync(0, _s1, fua: false);
            await engine.FlushAsync();
            await snapshots.CreateAsync("race", "s1", CancellationToken.None);
            await engine.WriteAsync(3 * MiB, _s2.AsMemory(3 * MiB, MiB), fua: false);
            await engine.FlushAsync();
            await snapshots.CreateAsync("race", "s2", CancellationToken.None);
        }
        await ReleaseLeaseAsync("race");
    }

    public async Task DisposeAsync()
    {
        _fs.Dispose();
        await _cluster.DisposeAsync();
        await _s3.DisposeAsync();
    }

    private ILogger Logger(string name) => _cluster.LoggerFactory.CreateLogger(name);

    private Task ReleaseLeaseAsync(string volume) =>
        _fs.Master.CallAsync("release", (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = volume, Holder = "" }, o).ResponseAsync, CancellationToken.None);

    private BackupStore OpenStore() => BackupStore.Open(BackupTarget.Parse($"s3://{_s3.Bucket}/race"), new BackupStoreOptions(_s3.Endpoint));

    private BackupUploader Uploader(BackupStore store) => new(store, _fs, _fs.Master, Logger("uploader"));

    /// <summary>Restores every backup left in the target into a new volume and compares it with its snapshot's bytes.</summary>
    private async Task AssertEveryBackupRestoresAsync(BackupStore store, string round)
    {
        var (backups, unreadable) = await new BackupCatalog(store).ListAsync(CancellationToken.None);
        Assert.Empty(unreadable);
        Assert.NotEmpty(backups);
        foreach (var backup in backups)
        {
            var volume = $"{round}-{backup.Id.ToLowerInvariant()}";
            await new BackupRestorer(store, _fs, _fs.Master, Logger("restorer")).RestoreAsync(backup.Id, volume, null, CancellationToken.None);
            await using var engine = await RafVolume.OpenAsync(_fs, new MasterVolumeCatalog(_fs.Master), volume,
                new RafOptions { Holder = "reader", GcInterval = null, SnapshotRequestInterval = null }, Logger("raf"), CancellationToken.None);
            var bytes = new byte[Size];
            await engine.ReadAsync(0, bytes);
            Assert.True((backup.Snapshot == "s1" ? _s1 : _s2).AsSpan().SequenceEqual(bytes), $"backup {backup.Id} of {backup.Snapshot} restored other bytes");
            output.WriteLine($"{round}: backup {backup.Id} of {backup.Snapshot} restores byte-exactly");
        }
    }

    private static async Task RemoveAllAsync(BackupStore store)
    {
        foreach (var b in (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Backups)
        {
            await new BackupDeleter(store, NullLoggerInstance).DeleteAsync(b.Id, null, CancellationToken.None);
        }
    }

    private static readonly ILogger NullLoggerInstance = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    /// <summary>Calls <paramref name="onFirst"/> (which may block) on the first report that matches; the rest pass through.</summary>
    private sealed class PausingProgress(Func<BackupProgress, bool> when, Action onFirst) : IProgress<BackupProgress>
    {
        private int _fired;

        public void Report(BackupProgress value)
        {
            if (when(value) && Interlocked.Exchange(ref _fired, 1) == 0)
            {
                onFirst();
            }
        }
    }

    [Fact]
    public async Task Rm_while_create_has_listed_the_stored_blocks_leaves_a_new_backup_that_restores_byte_exactly()
    {
        using var store = OpenStore();
        var b1 = await Uploader(store).BackUpAsync("s1", null, CancellationToken.None);

        // The upload of s2 lists the target (15 of its blocks are b1's), then pauses; b1 is deleted meanwhile.
        var listed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new ManualResetEventSlim();
        var upload = Task.Run(() => Uploader(store).BackUpAsync("s2",
            new PausingProgress(_ => true, () => { listed.TrySetResult(); resume.Wait(TimeSpan.FromMinutes(1)); }), CancellationToken.None));
        await listed.Task.WaitAsync(TimeSpan.FromMinutes(1));
        var removed = await new BackupDeleter(store, Logger("deleter")).DeleteAsync(b1.Id, null, CancellationToken.None);
        Assert.Equal(new BackupDeleteResult(Deleted: 0, KeptShared: 0, KeptForUploads: 16, removed.UploadsInProgress), removed);
        // gc neither, while the upload holds its marker.
        var collector = new BackupCollector(store, Logger("gc")) { Grace = TimeSpan.Zero };
        var busy = await Assert.ThrowsAsync<BackupException>(() => collector.CollectAsync(null, CancellationToken.None));
        Assert.Contains("in progress", busy.Message, StringComparison.Ordinal);
        resume.Set();
        var b2 = await upload.WaitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal([b2.Id], (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Backups.Select(b => b.Id));
        await AssertEveryBackupRestoresAsync(store, "r1");
        // Once the upload is done, gc frees the one block only b1 used (s1's block 3), and b2 still restores.
        Assert.Equal(1, (await collector.CollectAsync(null, CancellationToken.None)).Deleted);
        Assert.Equal(16, (await store.ListAsync(store.Target.BlocksPrefix, CancellationToken.None)).Count);
        await AssertEveryBackupRestoresAsync(store, "r1b");
    }

    [Fact]
    public async Task Create_started_while_rm_is_deleting_blocks_leaves_a_backup_that_restores_byte_exactly()
    {
        using var store = OpenStore();
        var b1 = await Uploader(store).BackUpAsync("s1", null, CancellationToken.None);

        // The delete of b1 (one request at a time) removes its manifest and one block, then pauses; an upload of s2 starts meanwhile.
        using var serialStore = BackupStore.Open(store.Target, new BackupStoreOptions(_s3.Endpoint) { Parallelism = 1 });
        var deleting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new ManualResetEventSlim();
        var delete = Task.Run(() => new BackupDeleter(serialStore, Logger("deleter")).DeleteAsync(b1.Id,
            new PausingProgress(p => p.BlocksDone >= 1, () => { deleting.TrySetResult(); resume.Wait(TimeSpan.FromMinutes(1)); }), CancellationToken.None));
        await deleting.Task.WaitAsync(TimeSpan.FromMinutes(1));
        var upload = Task.Run(() => Uploader(store).BackUpAsync("s2", null, CancellationToken.None));
        await Task.WhenAny(upload, Task.Delay(TimeSpan.FromSeconds(1))); // give the upload time to list the target
        resume.Set();
        await delete.WaitAsync(TimeSpan.FromMinutes(1));
        var b2 = await upload.WaitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal([b2.Id], (await new BackupCatalog(store).ListAsync(CancellationToken.None)).Backups.Select(b => b.Id));
        await AssertEveryBackupRestoresAsync(store, "r2");
    }

    [Fact]
    public async Task Creates_and_rms_run_together_in_rounds_and_every_backup_left_restores_byte_exactly()
    {
        using var store = OpenStore();
        for (var round = 0; round < 4; round++)
        {
            await RemoveAllAsync(store);
            var old = await Uploader(store).BackUpAsync("s1", null, CancellationToken.None);
            var upload = Task.Run(() => Uploader(store).BackUpAsync("s2", null, CancellationToken.None));
            await Task.Delay(round * 15);
            var delete = Task.Run(() => new BackupDeleter(store, Logger("deleter")).DeleteAsync(old.Id, null, CancellationToken.None));
            await Task.WhenAll(upload, delete).WaitAsync(TimeSpan.FromMinutes(1));
            await AssertEveryBackupRestoresAsync(store, $"round{round}");
        }
    }

    [Fact]
    public async Task A_holder_that_cannot_refresh_its_marker_stops_before_relying_on_it()
    {
        var s3 = await S3rverProcess.StartAsync(output, bucket: "lonely");
        var running = true;
        try
        {
            using var store = BackupStore.Open(BackupTarget.Parse("s3://lonely"), new BackupStoreOptions(s3.Endpoint) { MarkerStaleAfter = TimeSpan.FromSeconds(5) });
            var marker = await new BackupMarkers(store, Logger("markers")).HoldAsync(MarkerKind.InProgress, "bk-held", CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(2));
            marker.EnsureFresh(); // re-written every 0.5 s
            running = false;
            await s3.DisposeAsync(); // the store goes away: no refresh succeeds from now on
            await Task.Delay(TimeSpan.FromSeconds(6));
            var e = Assert.Throws<BackupException>(marker.EnsureFresh);
            Assert.Contains("was not refreshed", e.Message, StringComparison.Ordinal);
            await marker.DisposeAsync(); // the delete fails too: logged, the marker goes stale on its own
        }
        finally
        {
            if (running)
            {
                await s3.DisposeAsync();
            }
        }
    }
}
