namespace FeitianK8s.Core.Pangu;

/// <summary>
/// <see cref="IPanguFileSystem"/> in memory, with the real semantics: append-only
/// files, one lease holder per file (OpenForAppend hands out a strictly greater epoch
/// and fences every earlier appender), volume guards on namespace changes, and fault
/// injection for tests.
/// <para>
/// Crash model: a process crash of a user of this file system (the RAF engine) loses
/// that user's memory only. Every acknowledged append is "on every replica" here and
/// survives. <see cref="IPanguAppender.FlushAsync"/> and durable appends add power-loss
/// durability in the real file system; this class does not model power loss, it only
/// counts those calls (<see cref="FlushCount"/>, <see cref="DurableAppendCount"/>).
/// A torn append (a crash while the real client was splitting a record over chunks)
/// is modelled by <see cref="AppendPartialForTest"/>.
/// </para>
/// </summary>
public sealed class MemoryPanguFileSystem : IPanguFileSystem
{
    private const int DefaultReplicas = 3;

    private readonly object _gate = new();
    private readonly Dictionary<string, MemoryFile> _files = new(StringComparer.Ordinal);
    private readonly Func<string, ulong?>? _volumeEpoch;
    private int _failNextAppends;
    private string? _failPathPrefix;
    private long _flushCount;
    private long _durableAppendCount;
    private long _appendCount;

    /// <param name="volumeEpoch">
    /// Current lease epoch of a volume (null when the volume is unknown), used to honor
    /// <see cref="PanguVolumeGuard"/>s as the master does. Without it guards are not checked.
    /// </param>
    public MemoryPanguFileSystem(Func<string, ulong?>? volumeEpoch = null)
    {
        _volumeEpoch = volumeEpoch;
    }

    /// <summary>Artificial delay between applying an append and acknowledging it (applied order is still call order).</summary>
    public TimeSpan AppendLatency { get; set; }

    /// <summary>When set, appends are applied at once but acknowledged only after this task completes (holds a writer mid-append).</summary>
    public Task? AppendHold { get; set; }

    public long FlushCount => Interlocked.Read(ref _flushCount);
    public long DurableAppendCount => Interlocked.Read(ref _durableAppendCount);
    public long AppendCount => Interlocked.Read(ref _appendCount);

    /// <summary>Sum of all file lengths: the space the file system would use per replica.</summary>
    public long TotalBytes
    {
        get
        {
            lock (_gate)
            {
                return _files.Values.Sum(f => f.Length);
            }
        }
    }

    /// <summary>The next <paramref name="count"/> appends (to paths under <paramref name="pathPrefix"/>, if given) fail with Unavailable and land nothing.</summary>
    public void FailNextAppends(int count, string? pathPrefix = null)
    {
        lock (_gate)
        {
            _failNextAppends = count;
            _failPathPrefix = pathPrefix;
        }
    }

    /// <summary>Leaves a prefix of a record at the end of the file, bypassing leases: what a writer crashing mid-append leaves behind.</summary>
    public void AppendPartialForTest(string path, ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            GetFile(Normalize(path)).Append(bytes);
        }
    }

    /// <summary>Overwrites bytes in place, bypassing everything: corruption for tests.</summary>
    public void CorruptForTest(string path, long offset, ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            GetFile(Normalize(path)).Overwrite(offset, bytes);
        }
    }

    public Task<PanguFileInfo> CreateAsync(string path, int replicas = 0, PanguVolumeGuard? guard = null, CancellationToken ct = default)
    {
        path = Normalize(path);
        if (replicas < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"replica count {replicas} for {path} is negative");
        }
        lock (_gate)
        {
            CheckGuard(path, guard);
            if (_files.ContainsKey(path))
            {
                throw new PanguException(PanguErrorKind.AlreadyExists, $"file {path} already exists");
            }
            if (_files.Keys.Any(f => f.StartsWith(path + "/", StringComparison.Ordinal)))
            {
                throw new PanguException(PanguErrorKind.AlreadyExists, $"{path} is a directory");
            }
            var file = new MemoryFile(replicas == 0 ? DefaultReplicas : replicas);
            _files[path] = file;
            return Task.FromResult(file.Info(path));
        }
    }

    public Task<IPanguAppender> OpenForAppendAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default)
    {
        path = Normalize(path);
        lock (_gate)
        {
            CheckGuard(path, guard);
            var file = GetFile(path);
            file.Epoch++;
            return Task.FromResult<IPanguAppender>(new Appender(this, path, file, file.Epoch));
        }
    }

    public Task<IPanguReader> OpenForReadAsync(string path, CancellationToken ct = default)
    {
        path = Normalize(path);
        lock (_gate)
        {
            return Task.FromResult<IPanguReader>(new Reader(this, path, GetFile(path)));
        }
    }

    public Task<PanguFileInfo?> StatAsync(string path, CancellationToken ct = default)
    {
        path = Normalize(path);
        lock (_gate)
        {
            return Task.FromResult(_files.TryGetValue(path, out var file) ? file.Info(path) : null);
        }
    }

    public Task<IReadOnlyList<PanguDirectoryEntry>> ListAsync(string directory, bool recursive = false, CancellationToken ct = default)
    {
        var prefix = directory is "" or "/" ? "/" : Normalize(directory) + "/";
        var entries = new SortedDictionary<string, PanguDirectoryEntry>(StringComparer.Ordinal);
        lock (_gate)
        {
            foreach (var (path, file) in _files)
            {
                if (!path.StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }
                var rest = path[prefix.Length..];
                var slash = rest.IndexOf('/');
                if (recursive || slash < 0)
                {
                    entries[path] = new PanguDirectoryEntry(path, false, file.Length);
                }
                else
                {
                    var dir = prefix + rest[..slash];
                    entries[dir] = new PanguDirectoryEntry(dir, true, 0);
                }
            }
        }
        return Task.FromResult<IReadOnlyList<PanguDirectoryEntry>>(entries.Values.ToList());
    }

    public Task RenameAsync(string from, string to, CancellationToken ct = default)
    {
        from = Normalize(from);
        to = Normalize(to);
        lock (_gate)
        {
            var file = GetFile(from);
            if (_files.ContainsKey(to))
            {
                throw new PanguException(PanguErrorKind.AlreadyExists, $"cannot rename {from} to {to}: target exists");
            }
            _files.Remove(from);
            _files[to] = file;
        }
        return Task.CompletedTask;
    }

    public Task DeleteAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default)
    {
        path = Normalize(path);
        lock (_gate)
        {
            CheckGuard(path, guard);
            var file = GetFile(path);
            file.Deleted = true;
            _files.Remove(path);
        }
        return Task.CompletedTask;
    }

    private static string Normalize(string path)
    {
        if (string.IsNullOrEmpty(path) || path[0] != '/' || path.EndsWith('/') || path.Contains("//", StringComparison.Ordinal))
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"invalid path '{path}': must be absolute, without empty components or a trailing slash");
        }
        return path;
    }

    private MemoryFile GetFile(string path) =>
        _files.TryGetValue(path, out var file)
            ? file
            : throw new PanguException(PanguErrorKind.NotFound, $"file {path} not found");

    private void CheckGuard(string path, PanguVolumeGuard? guard)
    {
        if (guard is null || _volumeEpoch is null)
        {
            return;
        }
        var current = _volumeEpoch(guard.Volume)
            ?? throw new PanguException(PanguErrorKind.NotFound, $"volume {guard.Volume} guarding {path} not found");
        if (current != guard.Epoch)
        {
            throw new FencedException(path, guard.Epoch);
        }
    }

    private long AppendChecked(string path, MemoryFile file, ulong epoch, ReadOnlySpan<byte> data, bool durable)
    {
        lock (_gate)
        {
            if (file.Deleted)
            {
                throw new PanguException(PanguErrorKind.NotFound, $"file {path} was deleted");
            }
            if (file.Epoch != epoch)
            {
                throw new FencedException(path, epoch);
            }
            if (_failNextAppends > 0 && (_failPathPrefix is null || path.StartsWith(_failPathPrefix, StringComparison.Ordinal)))
            {
                _failNextAppends--;
                throw new PanguException(PanguErrorKind.Unavailable, $"injected append failure on {path} at offset {file.Length}");
            }
            var offset = file.Length;
            file.Append(data);
            _appendCount++;
            if (durable)
            {
                _durableAppendCount++;
            }
            return offset;
        }
    }

    private void FlushChecked(string path, MemoryFile file, ulong epoch)
    {
        lock (_gate)
        {
            if (file.Epoch != epoch)
            {
                throw new FencedException(path, epoch);
            }
            _flushCount++;
        }
    }

    private int ReadAt(string path, MemoryFile file, long offset, Span<byte> buffer)
    {
        if (offset < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"negative read offset {offset} in {path}");
        }
        lock (_gate)
        {
            if (file.Deleted)
            {
                throw new PanguException(PanguErrorKind.NotFound, $"file {path} was deleted");
            }
            return file.Read(offset, buffer);
        }
    }

    private sealed class MemoryFile(int replicas)
    {
        private byte[] _data = [];

        public int Replicas { get; } = replicas;
        public ulong Epoch { get; set; }
        public long Length { get; private set; }
        public bool Deleted { get; set; }

        public void Append(ReadOnlySpan<byte> bytes)
        {
            if (Length + bytes.Length > _data.Length)
            {
                var capacity = Math.Max(Length + bytes.Length, Math.Max(4096, (long)_data.Length * 2));
                Array.Resize(ref _data, checked((int)capacity));
            }
            bytes.CopyTo(_data.AsSpan((int)Length));
            Length += bytes.Length;
        }

        public void Overwrite(long offset, ReadOnlySpan<byte> bytes)
        {
            if (offset < 0 || offset + bytes.Length > Length)
            {
                throw new PanguException(PanguErrorKind.InvalidArgument, $"overwrite [{offset}, +{bytes.Length}) outside file of {Length} bytes");
            }
            bytes.CopyTo(_data.AsSpan((int)offset));
        }

        public int Read(long offset, Span<byte> buffer)
        {
            if (offset >= Length)
            {
                return 0;
            }
            var count = (int)Math.Min(buffer.Length, Length - offset);
            _data.AsSpan((int)offset, count).CopyTo(buffer);
            return count;
        }

        public PanguFileInfo Info(string path) => new(path, Length, Replicas, Epoch, []);
    }

    private sealed class Appender(MemoryPanguFileSystem fs, string path, MemoryFile file, ulong epoch) : IPanguAppender
    {
        private bool _closed;

        public string Path { get; } = path;
        public ulong Epoch { get; } = epoch;
        public long Length
        {
            get
            {
                lock (fs._gate)
                {
                    return file.Length;
                }
            }
        }

        public async Task<long> AppendAsync(ReadOnlyMemory<byte> data, bool durable = false, CancellationToken ct = default)
        {
            ct.ThrowIfCancellationRequested();
            if (_closed)
            {
                throw new PanguException(PanguErrorKind.InvalidArgument, $"appender of {Path} (epoch {Epoch}) is closed");
            }
            var offset = fs.AppendChecked(Path, file, Epoch, data.Span, durable);
            if (fs.AppendLatency > TimeSpan.Zero)
            {
                await Task.Delay(fs.AppendLatency, CancellationToken.None);
            }
            if (fs.AppendHold is { } hold)
            {
                await hold;
            }
            return offset;
        }

        public Task FlushAsync(CancellationToken ct = default)
        {
            fs.FlushChecked(Path, file, Epoch);
            return Task.CompletedTask;
        }

        public Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) =>
            Task.FromResult(fs.ReadAt(Path, file, offset, buffer.Span));

        public Task CloseAsync(CancellationToken ct = default)
        {
            _closed = true;
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _closed = true;
            return ValueTask.CompletedTask;
        }
    }

    private sealed class Reader(MemoryPanguFileSystem fs, string path, MemoryFile file) : IPanguReader
    {
        public string Path { get; } = path;
        public long Length
        {
            get
            {
                lock (fs._gate)
                {
                    return file.Length;
                }
            }
        }

        public Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default) =>
            Task.FromResult(fs.ReadAt(Path, file, offset, buffer.Span));

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
