using System.Diagnostics;
using System.Text.Json;
using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Backups of RAF snapshots to a real S3-compatible server (s3rver), driven through `feitian backup`
/// as a process: incremental uploads, restores into a second cluster, deletes that keep shared
/// blocks, a backup killed with SIGKILL and resumed, corrupted objects and bad input.
/// </summary>
public sealed class BackupTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int MiB = 1 << 20;
    private const int Block = BackupUploader.DefaultBlockSize;
    private S3rverProcess _s3 = null!;
    private TestCluster _cluster = null!;
    private PanguClient _fs = null!;

    public async Task InitializeAsync()
    {
        _s3 = await S3rverProcess.StartAsync(output);
        _cluster = await TestCluster.StartAsync(output, chunkServers: 3, racks: 3);
        _fs = _cluster.CreateClient();
    }

    public async Task DisposeAsync()
    {
        _fs.Dispose();
        await _cluster.DisposeAsync();
        await _s3.DisposeAsync();
    }

    private string Target => $"s3://{_s3.Bucket}/cluster-a";

    private string[] TargetArgs => ["--target", Target, "--endpoint", _s3.Endpoint];

    private static RafOptions Options(string holder) => new()
    {
        Holder = holder,
        SegmentSizeBytes = 16 * MiB,
        GcInterval = null,
        SnapshotRequestInterval = TimeSpan.FromMilliseconds(100),
    };

    private static Task<RafVolume> OpenAsync(TestCluster cluster, PanguClient fs, string name, string holder) =>
        RafVolume.OpenAsync(fs, new MasterVolumeCatalog(fs.Master), name, Options(holder), cluster.LoggerFactory.CreateLogger<RafVolume>(), CancellationToken.None);

    private static async Task CreateVolumeAsync(PanguClient fs, string name, long size, uint replicas) =>
        await fs.Master.CallAsync("create volume", (c, o) => c.CreateVolumeAsync(new CreateVolumeRequest { Name = name, SizeBytes = (ulong)size, Replicas = replicas }, o).ResponseAsync, CancellationToken.None);

    private static async Task<List<string>> VolumeNamesAsync(PanguClient fs) =>
        (await fs.Master.CallAsync("list", (c, o) => c.ListVolumesAsync(new ListVolumesRequest(), o).ResponseAsync, CancellationToken.None)).Volumes.Select(v => v.Name).ToList();

    private static async Task WriteAsync(RafVolume volume, long offset, byte[] data)
    {
        for (var at = 0; at < data.Length; at += 4 * MiB)
        {
            await volume.WriteAsync(offset + at, data.AsMemory(at, Math.Min(4 * MiB, data.Length - at)), fua: false);
        }
        await volume.FlushAsync();
    }

    /// <summary>The whole volume as restored: opened in <paramref name="cluster"/> by a new engine, which takes the lease the restore gave back.</summary>
    private static async Task<byte[]> ReadVolumeAsync(TestCluster cluster, PanguClient fs, string name, int size)
    {
        await using var volume = await OpenAsync(cluster, fs, name, $"reader-{name}");
        Assert.Equal(size, volume.Size);
        var bytes = new byte[size];
        await volume.ReadAsync(0, bytes);
        return bytes;
    }

    private async Task<byte[]> ReadSnapshotAsync(string snapshot)
    {
        await using var reader = await SnapshotBlockReader.OpenAsync(_fs, _fs.Master, snapshot, _cluster.LoggerFactory.CreateLogger("snapshot"), CancellationToken.None);
        var bytes = new byte[reader.SizeBytes];
        await reader.ReadAsync(0, bytes, CancellationToken.None);
        return bytes;
    }

    private ProcessStartInfo Cli(TestCluster cluster, IEnumerable<string> arguments, bool credentials = true)
    {
        var feitian = ServerExecutable.Find("feitian");
        var start = new ProcessStartInfo(feitian.FileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in feitian.PrefixArguments.Concat(arguments).Concat(["--master", cluster.Launcher.MasterAddress]).Concat(cluster.Launcher.TlsArgs()))
        {
            start.ArgumentList.Add(a);
        }
        start.Environment.Remove(BackupStoreOptions.AccessKeyVariable);
        start.Environment.Remove(BackupStoreOptions.SecretKeyVariable);
        if (credentials)
        {
            start.Environment[BackupStoreOptions.AccessKeyVariable] = S3rverProcess.AccessKey;
            start.Environment[BackupStoreOptions.SecretKeyVariable] = S3rverProcess.SecretKey;
        }
        return start;
    }

    /// <summary>Runs `feitian ARGS --master M --tls-*` to its end, with the s3rver credentials in its environment.</summary>
    private async Task<ToolResult> RunCliAsync(TestCluster cluster, params string[] arguments) => await RunCliAsync(Cli(cluster, arguments));

    private async Task<ToolResult> RunCliAsync(ProcessStartInfo start)
    {
        output.WriteLine($"$ feitian {string.Join(' ', start.ArgumentList)}");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        var result = new ToolResult(process.ExitCode, await stdout, await stderr);
        output.WriteLine($"exit {result.ExitCode}\n{result.StandardOutput.Trim()}\nstderr: {result.StandardError.Trim()}");
        return result;
    }

    private async Task<JsonElement> RunJsonAsync(TestCluster cluster, params string[] arguments)
    {
        var result = await RunCliAsync(cluster, arguments);
        Assert.True(result.Succeeded, $"feitian {string.Join(' ', arguments)} exited {result.ExitCode}: {result.StandardError}");
        using var json = JsonDocument.Parse(result.StandardOutput);
        return json.RootElement.Clone();
    }

    private BackupStore OpenStore()
    {
        Environment.SetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable, S3rverProcess.AccessKey);
        Environment.SetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable, S3rverProcess.SecretKey);
        return BackupStore.Open(BackupTarget.Parse(Target), new BackupStoreOptions(_s3.Endpoint));
    }

    private async Task<int> StoredBlocksAsync()
    {
        using var store = OpenStore();
        return (await store.ListAsync(store.Target.BlocksPrefix, CancellationToken.None)).Count;
    }

    /// <summary>Block objects stored whole (a PUT cut short by the kill may leave a shorter object on s3rver, which a rerun sends again).</summary>
    private async Task<int> WholeBlocksAsync()
    {
        using var store = OpenStore();
        return (await store.ListAsync(store.Target.BlocksPrefix, CancellationToken.None)).Count(o => o.Value == Block);
    }

    private static void AssertBackupJson(JsonElement backup, string volume, string snapshot, long size)
    {
        Assert.Equal(volume, backup.GetProperty("volume").GetString());
        Assert.Equal(snapshot, backup.GetProperty("snapshot").GetString());
        Assert.Equal(size, backup.GetProperty("sizeBytes").GetInt64());
        Assert.False(string.IsNullOrEmpty(backup.GetProperty("id").GetString()));
        Assert.True(backup.GetProperty("createdAt").TryGetDateTimeOffset(out _));
        Assert.True(backup.TryGetProperty("uploadedBytes", out _));
    }

    [Fact]
    public async Task Incremental_backup_sends_only_changed_blocks_and_both_restore_byte_identical_in_a_second_cluster_after_the_first_is_deleted()
    {
        const int size = 128 * MiB;
        const int written = 100 * MiB; // 100 data blocks; the rest is a hole that is never stored
        await CreateVolumeAsync(_fs, "data", size, replicas: 2);
        var first = new byte[size];
        TestData.Random(written, seed: 1).CopyTo(first, 0);
        var second = first.ToArray();
        var snapshots = new VolumeSnapshots(_fs, _fs.Master, _cluster.LoggerFactory.CreateLogger<VolumeSnapshots>());
        await using (var engine = await OpenAsync(_cluster, _fs, "data", "engine-a"))
        {
            await WriteAsync(engine, 0, first.AsSpan(0, written).ToArray());
            await snapshots.CreateAsync("data", "s1", CancellationToken.None);
            // 1% of the blocks change: 4 KiB inside block 37 (of 100). The engine keeps running: backups read frozen indexes.
            var change = TestData.Random(4096, seed: 2);
            change.CopyTo(second, (37 * Block) + 8192);
            await WriteAsync(engine, (37 * Block) + 8192, change);
            await snapshots.CreateAsync("data", "s2", CancellationToken.None);
            await WriteAsync(engine, 0, TestData.Random(8 * MiB, seed: 3)); // after s2: in no backup
        }
        Assert.Equal(first, await ReadSnapshotAsync("s1"));
        Assert.Equal(second, await ReadSnapshotAsync("s2"));

        var b1 = await RunJsonAsync(_cluster, ["backup", "create", "s1", .. TargetArgs, "--json"]);
        AssertBackupJson(b1, "data", "s1", size);
        Assert.Equal((long)written, b1.GetProperty("uploadedBytes").GetInt64());
        var b2 = await RunJsonAsync(_cluster, ["backup", "create", "s2", .. TargetArgs, "--region", "us-east-1", "--json"]);
        AssertBackupJson(b2, "data", "s2", size);
        var firstUpload = b1.GetProperty("uploadedBytes").GetInt64();
        var secondUpload = b2.GetProperty("uploadedBytes").GetInt64();
        output.WriteLine($"first backup sent {firstUpload} bytes, the incremental one {secondUpload} bytes ({100.0 * secondUpload / firstUpload:0.00}%)");
        Assert.InRange(secondUpload, 1, firstUpload * 5 / 100);
        Assert.Equal(101, await StoredBlocksAsync());
        var id1 = b1.GetProperty("id").GetString()!;
        var id2 = b2.GetProperty("id").GetString()!;

        var listed = await RunJsonAsync(_cluster, ["backup", "ls", .. TargetArgs, "--json"]);
        var ids = listed.GetProperty("backups").EnumerateArray().Select(b => b.GetProperty("id").GetString()).ToList();
        Assert.Equal([id1, id2], ids);
        var table = await RunCliAsync(_cluster, ["backup", "ls", .. TargetArgs]);
        Assert.True(table.Succeeded);
        Assert.Contains(id2, table.StandardOutput, StringComparison.Ordinal);

        // A second cluster that knows only the target restores both.
        await using var other = await TestCluster.StartAsync(output, chunkServers: 3, racks: 3);
        var otherFs = other.CreateClient();
        var restored = await RunCliAsync(other, ["backup", "restore", id1, "--volume", "r1", .. TargetArgs]);
        Assert.True(restored.Succeeded, restored.StandardError);
        Assert.Contains("r1", restored.StandardOutput, StringComparison.Ordinal);
        Assert.True((await RunCliAsync(other, ["backup", "restore", id2, "--volume", "r2", .. TargetArgs])).Succeeded);
        Assert.Equal(first, await ReadVolumeAsync(other, otherFs, "r1", size));
        Assert.Equal(second, await ReadVolumeAsync(other, otherFs, "r2", size));

        // Deleting the first backup deletes only the block no other backup has (the old block 37).
        var removed = await RunCliAsync(_cluster, ["backup", "rm", id1, .. TargetArgs]);
        Assert.True(removed.Succeeded, removed.StandardError);
        Assert.Equal(100, await StoredBlocksAsync());
        var left = await RunJsonAsync(_cluster, ["backup", "ls", .. TargetArgs, "--json"]);
        Assert.Equal([id2], left.GetProperty("backups").EnumerateArray().Select(b => b.GetProperty("id").GetString()).ToList());
        Assert.True((await RunCliAsync(other, ["backup", "restore", id2, "--volume", "r3", .. TargetArgs])).Succeeded);
        Assert.Equal(second, await ReadVolumeAsync(other, otherFs, "r3", size));

        // A block object damaged in the store (the server's own MD5 updated too, so only the block's
        // SHA-256 can tell): the restore fails on its checksum and leaves no volume behind.
        using (var store = OpenStore())
        {
            var manifest = await new BackupCatalog(store).GetAsync(id2, CancellationToken.None);
            var key = store.Target.BlockKey(manifest.Blocks[5].Sha256);
            var bytes = await File.ReadAllBytesAsync(_s3.ObjectFile(key));
            bytes[1000] ^= 0xff;
            await _s3.ReplaceObjectBytesAsync(key, bytes);
        }
        var corrupt = await RunCliAsync(other, ["backup", "restore", id2, "--volume", "r4", .. TargetArgs]);
        Assert.Equal(1, corrupt.ExitCode);
        Assert.Contains("fails its checksum", corrupt.StandardError, StringComparison.Ordinal);
        Assert.Contains("expected 1048576 bytes with SHA-256", corrupt.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("r4", await VolumeNamesAsync(otherFs));
    }

    [Fact]
    public async Task Backup_killed_midway_is_resumed_by_a_rerun_that_does_not_send_stored_blocks_again()
    {
        const int size = 64 * MiB;
        var data = TestData.Random(size, seed: 7);
        await CreateVolumeAsync(_fs, "big", size, replicas: 1);
        await using (var engine = await OpenAsync(_cluster, _fs, "big", "engine-k"))
        {
            await WriteAsync(engine, 0, data);
        }
        await _fs.Master.CallAsync("release", (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "big", Holder = "" }, o).ResponseAsync, CancellationToken.None);
        await new VolumeSnapshots(_fs, _fs.Master, _cluster.LoggerFactory.CreateLogger<VolumeSnapshots>()).CreateAsync("big", "k1", CancellationToken.None);

        // Kill -9 once a quarter of the blocks are through: progress lines come on stderr when it is not a terminal.
        var start = Cli(_cluster, ["backup", "create", "k1", .. TargetArgs, "--json"]);
        output.WriteLine($"$ feitian {string.Join(' ', start.ArgumentList)}");
        using var process = Process.Start(start)!;
        var killed = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line && line.StartsWith("progress: ", StringComparison.Ordinal) && long.Parse(line.Split(' ', '/')[1]) >= 16)
            {
                try
                {
                    process.Kill();
                }
                catch (InvalidOperationException)
                {
                }
                killed.TrySetResult(line);
            }
        };
        process.BeginErrorReadLine();
        var stdout = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        var lastLine = await killed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        output.WriteLine($"killed with SIGKILL after '{lastLine}' (exit code {process.ExitCode}); stdout: {await stdout}");
        Assert.Equal(137, process.ExitCode);

        // Killed midway: no backup exists yet, some of its blocks are stored.
        var listed = await RunJsonAsync(_cluster, ["backup", "ls", .. TargetArgs, "--json"]);
        Assert.Empty(listed.GetProperty("backups").EnumerateArray());
        var stored = await WholeBlocksAsync();
        output.WriteLine($"{stored} of 64 blocks stored whole when the backup was killed ({await StoredBlocksAsync()} objects)");
        Assert.InRange(stored, 16, 63);

        var resumed = await RunJsonAsync(_cluster, ["backup", "create", "k1", .. TargetArgs, "--json"]);
        Assert.Equal((64L - stored) * Block, resumed.GetProperty("uploadedBytes").GetInt64());
        Assert.Equal(64, await StoredBlocksAsync());
        var id = resumed.GetProperty("id").GetString()!;
        Assert.True((await RunCliAsync(_cluster, ["backup", "restore", id, "--volume", "big-restored", .. TargetArgs])).Succeeded);
        Assert.Equal(data, await ReadVolumeAsync(_cluster, _fs, "big-restored", size));

        // The same snapshot again: every block is in the target, nothing is sent.
        var again = await RunJsonAsync(_cluster, ["backup", "create", "k1", .. TargetArgs, "--json"]);
        Assert.Equal(0, again.GetProperty("uploadedBytes").GetInt64());
    }

    [Fact]
    public async Task Bad_input_gets_a_clear_error_a_non_zero_exit_and_changes_nothing()
    {
        await CreateVolumeAsync(_fs, "small", 4 * MiB, replicas: 1);
        await using (var engine = await OpenAsync(_cluster, _fs, "small", "engine-b"))
        {
            await WriteAsync(engine, 0, TestData.Random(2 * MiB, seed: 9));
        }
        await _fs.Master.CallAsync("release", (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "small", Holder = "" }, o).ResponseAsync, CancellationToken.None);
        await new VolumeSnapshots(_fs, _fs.Master, _cluster.LoggerFactory.CreateLogger<VolumeSnapshots>()).CreateAsync("small", "b1", CancellationToken.None);
        var volumesBefore = await VolumeNamesAsync(_fs);

        async Task ExpectFailureAsync(string expected, int exitCode, params string[] arguments)
        {
            var result = await RunCliAsync(_cluster, arguments);
            Assert.Equal(exitCode, result.ExitCode);
            Assert.Contains(expected, result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", result.StandardError, StringComparison.Ordinal); // one line, no stack trace
        }

        await ExpectFailureAsync("does not start with s3://", 1, "backup", "create", "b1", "--target", "http://bucket/x", "--endpoint", _s3.Endpoint);
        await ExpectFailureAsync("is not an S3 bucket name", 1, "backup", "ls", "--target", "s3://Bad_Bucket!", "--endpoint", _s3.Endpoint);
        await ExpectFailureAsync("is not an http(s) URL", 1, "backup", "ls", "--target", Target, "--endpoint", "not a url");
        await ExpectFailureAsync("--target is required", 2, "backup", "ls", "--endpoint", _s3.Endpoint);
        await ExpectFailureAsync("does not exist", 1, ["backup", "restore", "bk-20260101-000000-abcdef", "--volume", "nope", .. TargetArgs]);
        await ExpectFailureAsync("is not a backup id", 1, ["backup", "rm", "../../etc", .. TargetArgs]);
        await ExpectFailureAsync("does not exist", 1, ["backup", "rm", "bk-unknown", .. TargetArgs]);
        await ExpectFailureAsync("snapshot 'no-snap' does not exist", 1, ["backup", "create", "no-snap", .. TargetArgs]);
        await ExpectFailureAsync("bucket 'missing-bucket' does not exist", 1, "backup", "create", "b1", "--target", "s3://missing-bucket", "--endpoint", _s3.Endpoint);
        var noCredentials = await RunCliAsync(Cli(_cluster, ["backup", "create", "b1", .. TargetArgs], credentials: false));
        Assert.Equal(1, noCredentials.ExitCode);
        Assert.Contains("AWS_ACCESS_KEY_ID", noCredentials.StandardError, StringComparison.Ordinal);

        // A manifest that is garbage: ls warns and lists the rest; rm of another backup deletes no block.
        var good = await RunJsonAsync(_cluster, ["backup", "create", "b1", .. TargetArgs, "--json"]);
        var goodId = good.GetProperty("id").GetString()!;
        await ExpectFailureAsync("already exists", 1, ["backup", "restore", goodId, "--volume", "small", .. TargetArgs]);
        using (var store = OpenStore())
        {
            await store.PutAsync(store.Target.ManifestKey("bk-garbage"), "{\"format\":\"feitian-backup/1\",\"id\":"u8.ToArray(), CancellationToken.None);
        }
        var listed = await RunCliAsync(_cluster, ["backup", "ls", .. TargetArgs, "--json"]);
        Assert.True(listed.Succeeded);
        Assert.Contains("bk-garbage.json", listed.StandardError, StringComparison.Ordinal);
        Assert.Contains(goodId, listed.StandardOutput, StringComparison.Ordinal);
        var blocksBefore = await StoredBlocksAsync();
        await ExpectFailureAsync("do not parse", 1, ["backup", "rm", goodId, .. TargetArgs]);
        await ExpectFailureAsync("not a backup manifest", 1, ["backup", "restore", "bk-garbage", "--volume", "from-garbage", .. TargetArgs]);
        Assert.Equal(blocksBefore, await StoredBlocksAsync());
        Assert.Equal(volumesBefore, await VolumeNamesAsync(_fs));
    }

    [Fact]
    public async Task Gc_frees_blocks_of_a_killed_upload_only_past_the_grace_period_and_never_while_an_upload_marker_is_fresh()
    {
        const int size = 8 * MiB;
        var data = TestData.Random(size, seed: 21);
        await CreateVolumeAsync(_fs, "gcvol", size, replicas: 1);
        await using (var engine = await OpenAsync(_cluster, _fs, "gcvol", "engine-g"))
        {
            await WriteAsync(engine, 0, data);
        }
        await _fs.Master.CallAsync("release", (c, o) => c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "gcvol", Holder = "" }, o).ResponseAsync, CancellationToken.None);
        await new VolumeSnapshots(_fs, _fs.Master, _cluster.LoggerFactory.CreateLogger<VolumeSnapshots>()).CreateAsync("gcvol", "g1", CancellationToken.None);
        var backup = await RunJsonAsync(_cluster, ["backup", "create", "g1", .. TargetArgs, "--json"]);
        var id = backup.GetProperty("id").GetString()!;

        // What a backup killed midway and never resumed leaves: block objects no manifest references, and its in-progress marker.
        // Markers here go stale after 3 s (10 min by default).
        Environment.SetEnvironmentVariable(BackupStoreOptions.AccessKeyVariable, S3rverProcess.AccessKey);
        Environment.SetEnvironmentVariable(BackupStoreOptions.SecretKeyVariable, S3rverProcess.SecretKey);
        using var store = BackupStore.Open(BackupTarget.Parse(Target), new BackupStoreOptions(_s3.Endpoint) { MarkerStaleAfter = TimeSpan.FromSeconds(3) });
        for (var i = 0; i < 3; i++)
        {
            var orphan = TestData.Random(Block, seed: 100 + i);
            await store.PutAsync(store.Target.BlockKey(TestData.Sha256(orphan).ToLowerInvariant()), orphan, CancellationToken.None);
        }
        var markers = new BackupMarkers(store, _cluster.LoggerFactory.CreateLogger("markers"));
        await store.PutAsync(markers.KeyOf(MarkerKind.InProgress, "bk-killed"), "{}"u8.ToArray(), CancellationToken.None);
        Assert.Equal(11, await StoredBlocksAsync());

        var collector = new BackupCollector(store, _cluster.LoggerFactory.CreateLogger("gc")) { Grace = TimeSpan.Zero };
        var busy = await Assert.ThrowsAsync<BackupException>(() => collector.CollectAsync(null, CancellationToken.None));
        Assert.Contains("backup upload bk-killed", busy.Message, StringComparison.Ordinal);
        Assert.Equal(11, await StoredBlocksAsync());

        await Task.Delay(TimeSpan.FromSeconds(4)); // the killed upload's marker is stale now
        var young = await new BackupCollector(store, _cluster.LoggerFactory.CreateLogger("gc")).CollectAsync(null, CancellationToken.None);
        Assert.Equal(new BackupGcResult(Deleted: 0, DeletedBytes: 0, KeptYoung: 3, StaleMarkersDeleted: 1), young);
        Assert.Equal(11, await StoredBlocksAsync());
        Assert.Empty(await markers.ListAsync(CancellationToken.None));

        var bad = await RunCliAsync(_cluster, ["backup", "gc", .. TargetArgs, "--grace", "soon"]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--grace 'soon' is not a duration", bad.StandardError, StringComparison.Ordinal);
        var freed = await RunJsonAsync(_cluster, ["backup", "gc", .. TargetArgs, "--grace", "0", "--json"]);
        Assert.Equal(3, freed.GetProperty("deletedBlocks").GetInt32());
        Assert.Equal(3L * Block, freed.GetProperty("deletedBytes").GetInt64());
        Assert.Equal(8, await StoredBlocksAsync());
        var again = await RunJsonAsync(_cluster, ["backup", "gc", .. TargetArgs, "--grace", "0", "--json"]);
        Assert.Equal(0, again.GetProperty("deletedBlocks").GetInt32());

        // The backup still restores, with the replica count asked for (the cluster's default is 3), showing progress lines when not on a terminal.
        var restored = await RunCliAsync(_cluster, ["backup", "restore", id, "--volume", "gc-restored", "--replicas", "2", .. TargetArgs]);
        Assert.True(restored.Succeeded, restored.StandardError);
        Assert.Contains("2 replicas", restored.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("progress: 8/8 blocks", restored.StandardError, StringComparison.Ordinal);
        var info = await _fs.Master.CallAsync("stat", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = "gc-restored" }, o).ResponseAsync, CancellationToken.None);
        Assert.Equal(2u, info.Replicas);
        Assert.Equal(data, await ReadVolumeAsync(_cluster, _fs, "gc-restored", size));
        // On a terminal (a pseudo-terminal from util-linux `script`), a progress bar instead of progress lines.
        var plain = Cli(_cluster, ["backup", "restore", id, "--volume", "gc-default", .. TargetArgs]);
        var onTerminal = new ProcessStartInfo("script") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-qec", string.Join(' ', new[] { plain.FileName }.Concat(plain.ArgumentList).Select(a => $"'{a}'")), "/dev/null" })
        {
            onTerminal.ArgumentList.Add(a);
        }
        foreach (var (key, value) in plain.Environment)
        {
            onTerminal.Environment[key] = value;
        }
        onTerminal.Environment["TERM"] = "xterm";
        var byDefault = await RunCliAsync(onTerminal);
        Assert.True(byDefault.Succeeded, byDefault.StandardOutput);
        Assert.Contains("3 replicas", byDefault.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("\u2501", byDefault.StandardOutput, StringComparison.Ordinal); // the bar's '━'
        Assert.DoesNotContain("progress: ", byDefault.StandardOutput, StringComparison.Ordinal);
    }
}
