using System.Globalization;
using System.Runtime.InteropServices;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Log;

/// <summary>
/// Durable storage of the master's command log and snapshots in one directory:
/// <c>log-&lt;first index&gt;.bin</c> segments of framed <see cref="LogEntry"/> records and
/// <c>snapshot-&lt;last index&gt;.bin</c> files holding one framed <see cref="MasterSnapshot"/>.
/// Invariants: an entry is fsync'd before <see cref="Append"/> returns; a snapshot is
/// written to a temporary file, fsync'd and renamed before a new segment starts; the
/// previous snapshot and the segments after it are kept, so recovery can fall back to it
/// when the newest snapshot is unreadable.
/// </summary>
public sealed class MasterLogStore : IDisposable
{
    private const string LogPrefix = "log-";
    private const string SnapshotPrefix = "snapshot-";
    private const string Suffix = ".bin";

    private readonly string _directory;
    private readonly ILogger _logger;
    private FileStream _segment;
    private Stream _writer;
    private readonly Func<Stream, Stream> _decorate;
    private readonly MemoryStream _buffer = new();
    private readonly FileStream _lock;

    private MasterLogStore(string directory, FileStream lockFile, FileStream segment, Func<Stream, Stream>? decorate, ILogger logger)
    {
        _decorate = decorate ?? (stream => stream);
        _writer = _decorate(segment);
        _directory = directory;
        _lock = lockFile;
        _segment = segment;
        _logger = logger;
    }

    public string CurrentSegmentPath => _segment.Name;

    /// <summary>
    /// Opens the directory and rebuilds the state: newest readable snapshot, then every
    /// later log entry in order. A torn or corrupt final record of the last segment is cut
    /// off; corruption anywhere else stops recovery with an error (never silently drops
    /// acknowledged commands).
    /// </summary>
    /// <param name="decorateWrites">Wraps the stream appends are written through (tests inject faults here).</param>
    public static (MasterLogStore Store, MasterStateMachine State) Open(string directory, ILogger logger, Func<Stream, Stream>? decorateWrites = null)
    {
        Directory.CreateDirectory(directory);
        var lockFile = Lock(directory);
        try
        {
            return Recover(directory, lockFile, decorateWrites, logger);
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>One master per data directory: an exclusive lock on a file held while open.</summary>
    private static FileStream Lock(string directory)
    {
        var path = Path.Combine(directory, "LOCK");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException error)
        {
            throw new IOException($"data directory {directory} is in use by another master ({path} is locked)", error);
        }
    }

    private static (MasterLogStore Store, MasterStateMachine State) Recover(string directory, FileStream lockFile, Func<Stream, Stream>? decorate, ILogger logger)
    {
        foreach (var tmp in Directory.EnumerateFiles(directory, "*.tmp"))
        {
            File.Delete(tmp);
        }
        var segments = ListByIndex(directory, LogPrefix);
        var snapshots = ListByIndex(directory, SnapshotPrefix);

        Exception? lastError = null;
        var bases = snapshots.AsEnumerable().Reverse().Select(s => (Index: s.Index, Path: (string?)s.Path)).Append((Index: 0UL, Path: null));
        foreach (var (snapshotIndex, snapshotPath) in bases)
        {
            MasterStateMachine state;
            if (snapshotPath is null)
            {
                state = new MasterStateMachine();
            }
            else if (TryReadSnapshot(snapshotPath, out var snapshot) && snapshot.LastIndex == snapshotIndex)
            {
                state = MasterStateMachine.FromSnapshot(snapshot);
            }
            else
            {
                logger.LogWarning("Snapshot {Path} is unreadable; trying an older one", snapshotPath);
                continue;
            }
            try
            {
                var tailLength = Replay(state, segments, logger);
                var store = OpenForAppend(directory, lockFile, decorate, segments, state.LastIndex, tailLength, logger);
                logger.LogInformation("Recovered master state at log index {Index} from {Snapshot} and {Segments} log segment(s)",
                    state.LastIndex, snapshotPath ?? "no snapshot", segments.Count);
                return (store, state);
            }
            catch (InvalidDataException error)
            {
                lastError = error;
                logger.LogWarning(error, "Cannot recover from {Snapshot}", snapshotPath ?? "an empty state");
            }
        }
        throw new InvalidDataException($"cannot recover the master state in {directory}", lastError);
    }

    /// <summary>Replays entries after the state's index; returns the valid length of the last segment.</summary>
    private static long Replay(MasterStateMachine state, List<(ulong Index, string Path)> segments, ILogger logger)
    {
        long tailLength = 0;
        for (var s = 0; s < segments.Count; s++)
        {
            var path = segments[s].Path;
            var isLast = s == segments.Count - 1;
            var data = File.ReadAllBytes(path);
            var offset = 0;
            while (offset < data.Length)
            {
                if (!RecordFraming.TryRead(data, offset, out var payload, out var next))
                {
                    if (isLast && RecordFraming.IsTornTail(data, offset))
                    {
                        logger.LogWarning("Ignoring a torn or corrupt last record at offset {Offset} of {Path} ({Bytes} bytes)",
                            offset, path, data.Length - offset);
                        break;
                    }
                    throw new InvalidDataException($"corrupt log record at offset {offset} of {path}");
                }
                var entry = LogEntry.Parser.ParseFrom(payload);
                if (entry.Index > state.LastIndex)
                {
                    if (entry.Index != state.LastIndex + 1)
                    {
                        throw new InvalidDataException($"log gap in {path}: entry {entry.Index} after {state.LastIndex}");
                    }
                    var result = state.Apply(entry.Index, entry.Command);
                    if (!result.IsOk)
                    {
                        throw new InvalidDataException($"log entry {entry.Index} in {path} does not apply: {result.Error!.Message}");
                    }
                }
                offset = next;
            }
            tailLength = offset;
        }
        return tailLength;
    }

    private static MasterLogStore OpenForAppend(string directory, FileStream lockFile, Func<Stream, Stream>? decorate, List<(ulong Index, string Path)> segments, ulong lastIndex, long tailLength, ILogger logger)
    {
        FileStream stream;
        if (segments.Count == 0)
        {
            stream = CreateSegment(directory, lastIndex + 1);
        }
        else
        {
            stream = new FileStream(segments[^1].Path, FileMode.Open, FileAccess.Write, FileShare.Read);
            if (stream.Length != tailLength)
            {
                logger.LogWarning("Truncating {Path} from {Length} to {Valid} bytes", stream.Name, stream.Length, tailLength);
                stream.SetLength(tailLength);
                stream.Flush(flushToDisk: true);
            }
            stream.Seek(0, SeekOrigin.End);
        }
        return new MasterLogStore(directory, lockFile, stream, decorate, logger);
    }

    /// <summary>Writes the entries and fsyncs them: one write and one fsync per batch (group commit).</summary>
    public void Append(IReadOnlyList<LogEntry> entries)
    {
        _buffer.SetLength(0);
        foreach (var entry in entries)
        {
            RecordFraming.Write(_buffer, entry.ToByteArray());
        }
        _writer.Write(_buffer.GetBuffer(), 0, (int)_buffer.Length);
        _writer.Flush();
        _segment.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Persists a snapshot (tmp + fsync + rename + directory fsync), starts a new empty
    /// segment after it, and removes files older than the previous snapshot.
    /// </summary>
    public void WriteSnapshot(MasterSnapshot snapshot)
    {
        var path = Path.Combine(_directory, Name(SnapshotPrefix, snapshot.LastIndex));
        var tmp = path + ".tmp";
        using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            RecordFraming.Write(file, snapshot.ToByteArray());
            file.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        SyncDirectory(_directory);

        var next = CreateSegment(_directory, snapshot.LastIndex + 1);
        _segment.Dispose();
        _segment = next;
        _writer = _decorate(next);
        RemoveObsoleteFiles();
        _logger.LogInformation("Wrote snapshot {Path} at log index {Index}", path, snapshot.LastIndex);
    }

    /// <summary>Keeps the two newest snapshots and the segments that hold entries after the older one.</summary>
    private void RemoveObsoleteFiles()
    {
        var snapshots = ListByIndex(_directory, SnapshotPrefix);
        if (snapshots.Count < 2)
        {
            return;
        }
        var keepAfter = snapshots[^2].Index;
        foreach (var old in snapshots.Take(snapshots.Count - 2))
        {
            File.Delete(old.Path);
        }
        var segments = ListByIndex(_directory, LogPrefix);
        for (var i = 0; i + 1 < segments.Count; i++)
        {
            // Segment i holds entries [first_i, first_{i+1}); obsolete when all are <= keepAfter.
            if (segments[i + 1].Index <= keepAfter + 1)
            {
                File.Delete(segments[i].Path);
            }
        }
    }

    private static FileStream CreateSegment(string directory, ulong firstIndex)
    {
        var path = Path.Combine(directory, Name(LogPrefix, firstIndex));
        var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read);
        stream.Flush(flushToDisk: true);
        SyncDirectory(directory);
        return stream;
    }

    private static bool TryReadSnapshot(string path, out MasterSnapshot snapshot)
    {
        snapshot = new MasterSnapshot();
        var data = File.ReadAllBytes(path);
        if (!RecordFraming.TryRead(data, 0, out var payload, out var next) || next != data.Length)
        {
            return false;
        }
        try
        {
            snapshot = MasterSnapshot.Parser.ParseFrom(payload);
            return true;
        }
        catch (InvalidProtocolBufferException)
        {
            return false;
        }
    }

    private static string Name(string prefix, ulong index) => $"{prefix}{index:D20}{Suffix}";

    private static List<(ulong Index, string Path)> ListByIndex(string directory, string prefix)
    {
        var result = new List<(ulong, string)>();
        foreach (var path in Directory.EnumerateFiles(directory, prefix + "*" + Suffix))
        {
            var name = Path.GetFileName(path);
            var digits = name[prefix.Length..^Suffix.Length];
            if (ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            {
                result.Add((index, path));
            }
        }
        result.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return result;
    }

    /// <summary>fsync on the directory makes a rename or a new file name durable.</summary>
    private static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var fd = NativeMethods.open(directory, NativeMethods.O_RDONLY | NativeMethods.O_DIRECTORY);
        if (fd < 0)
        {
            throw new IOException($"cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()})");
        }
        try
        {
            if (NativeMethods.fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            _ = NativeMethods.close(fd);
        }
    }

    public void Dispose()
    {
        _segment.Dispose();
        _buffer.Dispose();
        _lock.Dispose();
    }

    private static class NativeMethods
    {
        public const int O_RDONLY = 0;
        public const int O_DIRECTORY = 0x10000;

        [DllImport("libc", SetLastError = true)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
