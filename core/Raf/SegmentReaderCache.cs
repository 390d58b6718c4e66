using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// A small LRU cache of open readers of sealed log segments. A reader is disposed only
/// after it left the cache and its last user returned it.
/// </summary>
public sealed class SegmentReaderCache(IPanguFileSystem fs, RafLayout layout, int capacity) : IAsyncDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<ulong, Entry> _entries = [];
    private readonly LinkedList<ulong> _lru = new();

    public async Task<T> UseAsync<T>(ulong segment, Func<IPanguReader, Task<T>> action)
    {
        var entry = Rent(segment);
        try
        {
            var reader = await entry.Reader;
            return await action(reader);
        }
        catch
        {
            if (entry.Reader.IsFaulted)
            {
                Invalidate(segment);
            }
            throw;
        }
        finally
        {
            await ReturnAsync(entry);
        }
    }

    /// <summary>Drops the segment's reader (the segment is being deleted).</summary>
    public void Invalidate(ulong segment)
    {
        Entry? dropped = null;
        lock (_gate)
        {
            if (_entries.Remove(segment, out var entry))
            {
                _lru.Remove(entry.Node);
                entry.Evicted = true;
                dropped = entry.Users == 0 ? entry : null;
            }
        }
        if (dropped is not null)
        {
            _ = CloseAsync(dropped);
        }
    }

    private Entry Rent(ulong segment)
    {
        var toClose = new List<Entry>();
        Entry entry;
        lock (_gate)
        {
            if (_entries.TryGetValue(segment, out var found))
            {
                entry = found;
                _lru.Remove(entry.Node);
                _lru.AddFirst(entry.Node);
            }
            else
            {
                entry = new Entry(fs.OpenForReadAsync(layout.SegmentPath(segment)), new LinkedListNode<ulong>(segment));
                _entries[segment] = entry;
                _lru.AddFirst(entry.Node);
                while (_entries.Count > capacity && _lru.Last is { } last)
                {
                    var victim = _entries[last.Value];
                    _entries.Remove(last.Value);
                    _lru.RemoveLast();
                    victim.Evicted = true;
                    if (victim.Users == 0)
                    {
                        toClose.Add(victim);
                    }
                }
            }
            entry.Users++;
        }
        foreach (var victim in toClose)
        {
            _ = CloseAsync(victim);
        }
        return entry;
    }

    private async Task ReturnAsync(Entry entry)
    {
        bool close;
        lock (_gate)
        {
            entry.Users--;
            close = entry.Evicted && entry.Users == 0;
        }
        if (close)
        {
            await CloseAsync(entry);
        }
    }

    private static async Task CloseAsync(Entry entry)
    {
        try
        {
            var reader = await entry.Reader;
            await reader.DisposeAsync();
        }
        catch (Exception)
        {
            // An open that failed has nothing to close.
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<Entry> all;
        lock (_gate)
        {
            all = [.. _entries.Values];
            _entries.Clear();
            _lru.Clear();
        }
        foreach (var entry in all)
        {
            await CloseAsync(entry);
        }
    }

    private sealed class Entry(Task<IPanguReader> reader, LinkedListNode<ulong> node)
    {
        public Task<IPanguReader> Reader { get; } = reader;
        public LinkedListNode<ulong> Node { get; } = node;
        public int Users { get; set; }
        public bool Evicted { get; set; }
    }
}
