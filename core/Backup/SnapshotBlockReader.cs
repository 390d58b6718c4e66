using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Backup;

/// <summary>A piece of a snapshot's block that holds data: volume range and the log record that wrote it.</summary>
public readonly record struct WrittenPiece(long Start, long Length, ulong Seq);

/// <summary>
/// Reads a snapshot's bytes straight from the log segments its frozen index points at (no engine,
/// no lease: the snapshot's references keep those segments from GC). Thread-safe.
/// </summary>
public sealed class SnapshotBlockReader : IAsyncDisposable
{
    private readonly Extent[] _extents;
    private readonly SegmentReaderCache _segments;

    private SnapshotBlockReader(IPanguFileSystem fs, SnapshotRecord snapshot, VolumeInfo volume, RafLayout layout, RafCheckpoint frozen)
    {
        Snapshot = snapshot;
        Volume = volume;
        _extents = [.. frozen.Extents.OrderBy(e => e.Start)];
        _segments = new SegmentReaderCache(fs, layout, capacity: 32);
    }

    public SnapshotRecord Snapshot { get; }
    public VolumeInfo Volume { get; }
    public long SizeBytes => Snapshot.SizeBytes;

    public static async Task<SnapshotBlockReader> OpenAsync(IPanguFileSystem fs, MasterConnection master, string snapshot, ILogger logger, CancellationToken ct)
    {
        var snapshots = new VolumeSnapshots(fs, master, logger);
        var record = await snapshots.GetAsync(snapshot, ct)
            ?? throw new BackupException(BackupErrorKind.NotFound, $"snapshot '{snapshot}' does not exist (`feitian snapshot ls` lists them)");
        if (!record.ReadyToUse)
        {
            throw new BackupException(BackupErrorKind.NotFound, $"snapshot '{snapshot}' is not ready to use (its frozen index is not written)");
        }
        var volume = await StatVolumeAsync(master, record.Volume, ct)
            ?? throw new BackupException(BackupErrorKind.NotFound, $"volume '{record.Volume}' of snapshot '{snapshot}' does not exist");
        var layout = await RafSharedSegments.LoadLayoutAsync(fs, volume.Directory, ct);
        var frozen = await TryReadFrozenAsync(fs, volume.Directory, snapshot, ct)
            ?? throw new BackupException(BackupErrorKind.Corrupt, $"the frozen index of snapshot '{snapshot}' ({new RafLayout(volume.Directory).SnapshotPath(snapshot)}) is missing or does not verify");
        return new SnapshotBlockReader(fs, record, volume, layout, frozen);
    }

    /// <summary>The frozen index of snapshot <paramref name="name"/> in a volume directory; null when it is not there or does not verify.</summary>
    public static async Task<RafCheckpoint?> TryReadFrozenAsync(IPanguFileSystem fs, string volumeDirectory, string name, CancellationToken ct)
    {
        var bytes = await RafFiles.TryReadAllAsync(fs, new RafLayout(volumeDirectory).SnapshotPath(name), ct);
        return bytes is null ? null : RafCheckpoint.TryParse(bytes);
    }

    public static async Task<VolumeInfo?> StatVolumeAsync(MasterConnection master, string name, CancellationToken ct)
    {
        try
        {
            return await master.CallAsync("stat volume", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = name }, o).ResponseAsync, ct);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
        {
            return null;
        }
    }

    /// <summary>What wrote [offset, offset+length) in <paramref name="extents"/> (sorted by start): equal signatures of two snapshots of one volume mean equal bytes.</summary>
    public static List<WrittenPiece> Signature(IReadOnlyList<Extent> extents, long offset, long length)
    {
        var pieces = new List<WrittenPiece>();
        foreach (var e in Overlapping(extents, offset, offset + length))
        {
            var from = Math.Max(offset, e.Start);
            var to = Math.Min(offset + length, e.End);
            pieces.Add(new WrittenPiece(from, to - from, e.Seq));
        }
        return pieces;
    }

    public List<WrittenPiece> Signature(long offset, long length) => Signature(_extents, offset, length);

    /// <summary>Whether the snapshot has no data in [offset, offset+length) (a hole reads zeros).</summary>
    public bool IsHole(long offset, long length) => !Overlapping(_extents, offset, offset + length).Any();

    /// <summary>Reads [offset, offset+buffer.Length) of the snapshot: holes as zeros, data from the log.</summary>
    public async Task ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct)
    {
        buffer.Span.Clear();
        var end = offset + buffer.Length;
        foreach (var e in Overlapping(_extents, offset, end))
        {
            var from = Math.Max(offset, e.Start);
            var to = Math.Min(end, e.End);
            var target = buffer[(int)(from - offset)..(int)(to - offset)];
            var at = e.DataOffset + (from - e.Start);
            await _segments.UseAsync(e.Segment, async reader =>
            {
                var done = 0;
                while (done < target.Length)
                {
                    var n = await reader.ReadAsync(at + done, target[done..], ct);
                    if (n <= 0)
                    {
                        throw new BackupException(BackupErrorKind.Corrupt,
                            $"snapshot '{Snapshot.Name}': log segment {e.Segment} ends at {at + done}, but the frozen index maps {target.Length} bytes at {at}");
                    }
                    done += n;
                }
                return 0;
            });
        }
    }

    private static IEnumerable<Extent> Overlapping(IReadOnlyList<Extent> sorted, long start, long end)
    {
        // First extent that ends after start: extents never overlap, so ends ascend with starts.
        int lo = 0, hi = sorted.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (sorted[mid].End <= start)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        for (var i = lo; i < sorted.Count && sorted[i].Start < end; i++)
        {
            yield return sorted[i];
        }
    }

    public ValueTask DisposeAsync() => _segments.DisposeAsync();
}
