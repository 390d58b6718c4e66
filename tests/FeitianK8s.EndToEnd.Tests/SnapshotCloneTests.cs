using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// RAF snapshots and clones on a real cluster (master and chunk servers as processes), with the
/// engines in this process: frozen indexes, reference-counted segments, GC, restarts.
/// </summary>
public sealed class SnapshotCloneTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int MiB = 1 << 20;
    private TestCluster _cluster = null!;
    private PanguClient _fs = null!;
    private VolumeSnapshots _snapshots = null!;

    public async Task InitializeAsync()
    {
        _cluster = await TestCluster.StartAsync(output, chunkServers: 3, racks: 3);
        _fs = _cluster.CreateClient();
        _snapshots = new VolumeSnapshots(_fs, _fs.Master, _cluster.LoggerFactory.CreateLogger<VolumeSnapshots>()) { EngineAnswerTimeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        _fs.Dispose();
        await _cluster.DisposeAsync();
    }

    /// <summary>1 MiB segments, no background GC (tests run passes themselves), snapshot requests polled often.</summary>
    private static RafOptions Options(string holder) => new()
    {
        Holder = holder,
        SegmentSizeBytes = MiB,
        GcInterval = null,
        GcSealHeadMinBytes = 0,
        SnapshotRequestInterval = TimeSpan.FromMilliseconds(100),
    };

    private Task<RafVolume> OpenAsync(string name, string holder) =>
        RafVolume.OpenAsync(_fs, new MasterVolumeCatalog(_fs.Master), name, Options(holder), _cluster.LoggerFactory.CreateLogger<RafVolume>(), CancellationToken.None);

    private async Task CreateVolumeAsync(string name, long size) =>
        await _fs.Master.CallAsync("create volume", (c, o) => c.CreateVolumeAsync(new CreateVolumeRequest { Name = name, SizeBytes = (ulong)size, Replicas = 3 }, o).ResponseAsync, CancellationToken.None);

    private static async Task WriteAsync(RafVolume volume, long offset, byte[] data)
    {
        for (var at = 0; at < data.Length; at += MiB)
        {
            await volume.WriteAsync(offset + at, data.AsMemory(at, Math.Min(MiB, data.Length - at)), fua: false);
        }
        await volume.FlushAsync();
    }

    private static async Task<byte[]> ReadAsync(RafVolume volume, long offset, int length)
    {
        var buffer = new byte[length];
        await volume.ReadAsync(offset, buffer);
        return buffer;
    }

    /// <summary>Bytes of every log segment file in the volume's directory, as the master reports them.</summary>
    private async Task<long> LogBytesAsync(string volume)
    {
        var entries = await _fs.ListAsync($"/volumes/{volume}/log", ct: CancellationToken.None);
        return entries.Where(e => !e.IsDirectory).Sum(e => e.Length);
    }

    [Fact]
    public async Task Snapshot_keeps_its_bytes_through_overwrite_gc_and_restart_and_removing_it_frees_the_space()
    {
        await CreateVolumeAsync("src", 16 * MiB);
        var before = TestData.Random(8 * MiB, seed: 1);
        var after = TestData.Random(8 * MiB, seed: 2);
        var source = await OpenAsync("src", "engine-a");
        await WriteAsync(source, 0, before);

        // The engine holding the lease answers the request: nothing is copied, it is instant.
        var started = DateTime.UtcNow;
        var snapshot = await _snapshots.CreateAsync("src", "s1", CancellationToken.None);
        output.WriteLine($"snapshot of 8 MiB taken in {(DateTime.UtcNow - started).TotalMilliseconds:0} ms");
        Assert.True(snapshot.ReadyToUse);
        Assert.Equal(16 * MiB, snapshot.SizeBytes);
        await Assert.ThrowsAsync<SnapshotException>(() => _snapshots.CreateAsync("src", "s1", CancellationToken.None));

        await WriteAsync(source, 0, after);
        var logBeforeGc = await LogBytesAsync("src");
        var gc = await source.RunGcOnceAsync();
        var logAfterGc = await LogBytesAsync("src");
        output.WriteLine($"overwritten: log {logBeforeGc} bytes; GC pinned by the snapshot collected {gc.SegmentsCollected} segments, log {logAfterGc} bytes");
        // The overwritten 8 MiB are dead in the live index but the snapshot references them: GC keeps them.
        Assert.True(logAfterGc >= 16L * MiB, $"GC freed data the snapshot references: {logAfterGc} bytes left");

        // A clone of the snapshot reads what the volume held when it was taken, at once.
        var clone = await _snapshots.CreateVolumeFromSnapshotAsync("s1-clone", "s1", null, CancellationToken.None);
        Assert.Equal(16UL * MiB, clone.SizeBytes);
        await using (var c = await OpenAsync("s1-clone", "engine-b"))
        {
            Assert.Equal(before, await ReadAsync(c, 0, 8 * MiB));
            Assert.Equal(new byte[8 * MiB], await ReadAsync(c, 8 * MiB, 8 * MiB));
            // Copy-on-write: the clone's writes go to its own log; the source is untouched.
            var mine = TestData.Random(MiB, seed: 3);
            await WriteAsync(c, 2 * MiB, mine);
            Assert.Equal(mine, await ReadAsync(c, 2 * MiB, MiB));
            Assert.Equal(after, await ReadAsync(source, 0, 8 * MiB));
        }

        // Restart the source (a new engine, recovery from checkpoint + log) and collect again.
        await source.DisposeAsync();
        source = await OpenAsync("src", "engine-a2");
        Assert.Equal(after, await ReadAsync(source, 0, 8 * MiB));
        await source.RunGcOnceAsync();
        var laterClone = await _snapshots.CreateVolumeFromSnapshotAsync("s1-clone2", "s1", 32 * MiB, CancellationToken.None);
        Assert.Equal(32UL * MiB, laterClone.SizeBytes);
        await using (var c = await OpenAsync("s1-clone2", "engine-c"))
        {
            Assert.Equal(32 * MiB, c.Size);
            Assert.Equal(before, await ReadAsync(c, 0, 8 * MiB));
            var tail = TestData.Random(MiB, seed: 4);
            await WriteAsync(c, 31 * MiB, tail);
            Assert.Equal(tail, await ReadAsync(c, 31 * MiB, MiB));
        }
        // The first clone also reopens (recovery through shared segments) with its own write intact.
        await using (var c = await OpenAsync("s1-clone", "engine-b2"))
        {
            Assert.Equal(before.AsSpan(0, 2 * MiB).ToArray(), await ReadAsync(c, 0, 2 * MiB));
            Assert.Equal(TestData.Random(MiB, seed: 3), await ReadAsync(c, 2 * MiB, MiB));
        }

        // The source cannot be deleted while clones share its segments or snapshots exist.
        var refused = await Assert.ThrowsAsync<SnapshotException>(() => _snapshots.DeleteVolumeAsync("src", CancellationToken.None));
        Assert.Equal(SnapshotErrorKind.FailedPrecondition, refused.Kind);
        await _snapshots.DeleteVolumeAsync("s1-clone", CancellationToken.None);
        await _snapshots.DeleteVolumeAsync("s1-clone2", CancellationToken.None);
        Assert.Empty(await RafFiles.ListNamesAsync(_fs, "/volumes/src/refs", CancellationToken.None));

        // Removing the last reference lets the next GC pass free the space.
        var pinnedBytes = await LogBytesAsync("src");
        await _snapshots.RemoveAsync("s1", CancellationToken.None);
        Assert.Empty(await _snapshots.ListAsync("src", CancellationToken.None));
        var freed = await source.RunGcOnceAsync();
        var unpinnedBytes = await LogBytesAsync("src");
        output.WriteLine($"after removing the snapshot: GC collected {freed.SegmentsCollected} segments, freed {freed.BytesFreed} bytes; log {pinnedBytes} -> {unpinnedBytes} bytes");
        Assert.True(unpinnedBytes <= pinnedBytes - (6L * MiB), $"removing the snapshot freed too little: {pinnedBytes} -> {unpinnedBytes}");
        Assert.Equal(after, await ReadAsync(source, 0, 8 * MiB));
        await source.DisposeAsync();
        await _snapshots.DeleteVolumeAsync("src", CancellationToken.None);
    }

    [Fact]
    public async Task Clone_from_a_volume_is_bigger_and_source_gc_never_frees_what_it_shares()
    {
        await CreateVolumeAsync("base", 8 * MiB);
        var original = TestData.Random(8 * MiB, seed: 10);
        var source = await OpenAsync("base", "engine-a");
        await WriteAsync(source, 0, original);

        var clone = await _snapshots.CreateVolumeFromVolumeAsync("big", "base", 32 * MiB, CancellationToken.None);
        Assert.Equal(32UL * MiB, clone.SizeBytes);
        // The transient snapshot is gone: only the clone's pin keeps the shared segments.
        Assert.Empty(await RafFiles.ListNamesAsync(_fs, "/volumes/base/snapshots", CancellationToken.None));
        Assert.Equal(["big"], await RafFiles.ListNamesAsync(_fs, "/volumes/base/refs", CancellationToken.None));

        // Overwrite the whole source twice and collect: every old segment is dead in the source's index.
        await WriteAsync(source, 0, TestData.Random(8 * MiB, seed: 11));
        await WriteAsync(source, 0, TestData.Random(8 * MiB, seed: 12));
        await source.RunGcOnceAsync();
        await source.DisposeAsync();
        source = await OpenAsync("base", "engine-a2");
        await source.RunGcOnceAsync();

        await using (var c = await OpenAsync("big", "engine-b"))
        {
            Assert.Equal(32 * MiB, c.Size);
            Assert.Equal(original, await ReadAsync(c, 0, 8 * MiB));
            Assert.Equal(new byte[MiB], await ReadAsync(c, 20 * MiB, MiB));
        }

        // A clone of an idle volume (no lease holder): the snapshot is taken without any engine running.
        await source.DisposeAsync();
        await _fs.Master.CallAsync("release", (cl, o) => cl.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "base", Holder = "" }, o).ResponseAsync, CancellationToken.None);
        var idle = await _snapshots.CreateAsync("base", "idle", CancellationToken.None);
        Assert.True(idle.ReadyToUse);
        var leaseAfter = await _fs.Master.CallAsync("stat", (cl, o) => cl.StatVolumeAsync(new StatVolumeRequest { Name = "base" }, o).ResponseAsync, CancellationToken.None);
        Assert.Equal("", leaseAfter.LeaseHolder);

        // A clone of the clone (taken by the clone's running engine) shares segments of both volumes.
        VolumeInfo grandchild;
        var ownOfBig = TestData.Random(MiB, seed: 13);
        await using (var running = await OpenAsync("big", "engine-b2"))
        {
            await WriteAsync(running, 16 * MiB, ownOfBig);
            grandchild = await _snapshots.CreateVolumeFromVolumeAsync("grandchild", "big", null, CancellationToken.None);
        }
        Assert.Equal(32UL * MiB, grandchild.SizeBytes);
        await using (var g = await OpenAsync("grandchild", "engine-g"))
        {
            Assert.Equal(original, await ReadAsync(g, 0, 8 * MiB));
            Assert.Equal(ownOfBig, await ReadAsync(g, 16 * MiB, MiB));
        }
        Assert.Contains("grandchild", await RafFiles.ListNamesAsync(_fs, "/volumes/base/refs", CancellationToken.None));
        Assert.Equal(["grandchild"], await RafFiles.ListNamesAsync(_fs, "/volumes/big/refs", CancellationToken.None));

        await Assert.ThrowsAsync<SnapshotException>(() => _snapshots.DeleteVolumeAsync("big", CancellationToken.None));
        await _snapshots.DeleteVolumeAsync("grandchild", CancellationToken.None);
        await _snapshots.DeleteVolumeAsync("big", CancellationToken.None);
        await _snapshots.RemoveAsync("idle", CancellationToken.None);
        await _snapshots.DeleteVolumeAsync("base", CancellationToken.None);
        Assert.Empty(await RafFiles.ListNamesAsync(_fs, "/volumes/base/refs", CancellationToken.None));
    }
}
