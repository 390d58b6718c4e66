using FeitianK8s.Proto.Master;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Reads one file through a cached chunk layout. The last chunk, while unsealed, is sized
/// by asking a replica (the master only knows the last committed length); reads at or past
/// the cached end refresh the layout once.
/// </summary>
public sealed class PanguReader : IPanguReader
{
    private readonly MasterConnection _master;
    private readonly ChunkReader _chunks;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _refreshLock = new(1, 1);
    private ChunkLayout _layout = new([]);

    private PanguReader(string path, MasterConnection master, ChunkReader chunks, ILogger logger)
    {
        Path = path;
        _master = master;
        _chunks = chunks;
        _logger = logger;
    }

    public string Path { get; }

    public long Length => _layout.Length;

    public static async Task<PanguReader> OpenAsync(string path, MasterConnection master, ChunkReader chunks, ILogger logger, CancellationToken ct)
    {
        var reader = new PanguReader(path, master, chunks, logger);
        await reader.RefreshAsync(ct);
        return reader;
    }

    public async Task<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct = default)
    {
        if (offset < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"read of {Path}: negative offset {offset}");
        }
        if (buffer.Length == 0)
        {
            return 0;
        }
        if (offset + buffer.Length > _layout.Length)
        {
            await RefreshAsync(ct);
        }
        return await _layout.ReadAsync(_chunks, offset, buffer, ct);
    }

    private async Task RefreshAsync(CancellationToken ct)
    {
        await _refreshLock.WaitAsync(ct);
        try
        {
            var info = await PanguClient.CallMasterAsync(_master, "stat", Path,
                (m, o) => m.StatFileAsync(new StatFileRequest { Path = Path }, o).ResponseAsync, ct);
            var chunks = info.Chunks.Select(ProtoMapping.ToChunk).ToList();
            if (chunks.Count > 0 && !chunks[^1].Sealed)
            {
                var last = chunks[^1];
                var current = await _chunks.CurrentLengthAsync(last, ct);
                chunks[^1] = last with { Length = Math.Max(current, last.Length) };
            }
            _layout = new ChunkLayout(chunks);
            _logger.LogDebug("layout of {Path}: {Chunks} chunks, {Length} bytes", Path, chunks.Count, _layout.Length);
        }
        finally
        {
            _refreshLock.Release();
        }
    }

    public ValueTask DisposeAsync()
    {
        _refreshLock.Dispose();
        return ValueTask.CompletedTask;
    }
}
