using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Scrub;

/// <summary>
/// Background scrubber: reads every stored block, chunk by chunk in id order, through the store's verified read
/// path (each block's CRC32C is checked), at most <c>bytesPerSecond</c> scaled by the adaptive share (it yields to
/// foreground I/O the same way rebuild copies do), in small pieces so a chunk's lock is held only briefly.
/// A checksum mismatch is reported to the master as a bad replica (chunk id + this server's id), which then has it
/// replaced from a good replica; the scrubber never repairs in place. Progress is saved every few seconds and at
/// the end of each chunk, so a restarted server resumes the pass where it stopped.
/// </summary>
public sealed class Scrubber(
    ChunkStore store,
    long bytesPerSecond,
    string progressPath,
    Func<ulong, string, Task> reportBad,
    Func<double> share,
    TimeProvider clock,
    ILogger<Scrubber> log)
{
    public const int PieceBytes = 256 * 1024;
    /// <summary>Shortest time between the starts of two passes (a nearly empty server does not spin).</summary>
    public static readonly TimeSpan MinPassInterval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan SaveEvery = TimeSpan.FromSeconds(2);

    private readonly TokenBucket _bucket = new(bytesPerSecond, Math.Max(PieceBytes, bytesPerSecond / 10));
    private volatile ScrubState _state = ScrubState.Load(progressPath, clock.GetUtcNow().ToUnixTimeMilliseconds());

    public ScrubState State => _state;

    public async Task RunAsync(CancellationToken ct)
    {
        log.LogInformation("Scrubber running at {BytesPerSecond} bytes/s, resuming at chunk {ChunkId} offset {Offset}", bytesPerSecond, _state.ChunkId, _state.Offset);
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await PassAsync(ct).ConfigureAwait(false);
                var started = DateTimeOffset.FromUnixTimeMilliseconds(_state.PassStartedUnixMs);
                var rest = MinPassInterval - (clock.GetUtcNow() - started);
                if (rest > TimeSpan.Zero)
                {
                    await Task.Delay(rest, clock, ct).ConfigureAwait(false);
                }
                _state = _state with { PassStartedUnixMs = clock.GetUtcNow().ToUnixTimeMilliseconds(), ChunkId = 0, Offset = 0 };
                Save();
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            Save();
        }
    }

    /// <summary>Verifies every chunk from the saved position to the end, then records the pass as completed.</summary>
    public async Task PassAsync(CancellationToken ct)
    {
        var lastSave = clock.GetUtcNow();
        foreach (var chunk in store.Inventory().Where(c => c.Id >= _state.ChunkId))
        {
            var offset = chunk.Id == _state.ChunkId ? _state.Offset : 0;
            while (offset < chunk.Length)
            {
                ct.ThrowIfCancellationRequested();
                var length = (uint)Math.Min(PieceBytes, chunk.Length - offset);
                try
                {
                    var read = await store.ReadAsync(chunk.Id, (ulong)offset, length).ConfigureAwait(false);
                    if (read.Data.Length == 0)
                    {
                        break;
                    }
                    offset += read.Data.Length;
                    _state = _state with { ChunkId = chunk.Id, Offset = offset, BytesVerified = _state.BytesVerified + (ulong)read.Data.Length };
                    await PaceAsync(read.Data.Length, ct).ConfigureAwait(false);
                }
                catch (ChunkStoreException error) when (error.Error is ChunkError.Corrupt or ChunkError.IoError)
                {
                    _state = _state with { BadFound = _state.BadFound + 1 };
                    log.LogError("Scrub found chunk {ChunkId} bad at offset {Offset}: {Reason}; reporting it to the master", chunk.Id, offset, error.Message);
                    await ReportAsync(chunk.Id, $"scrub: {error.Message}").ConfigureAwait(false);
                    break;
                }
                catch (ChunkStoreException error) when (error.Error is ChunkError.NotFound or ChunkError.BeyondEnd)
                {
                    break; // deleted or cut meanwhile
                }
                if (clock.GetUtcNow() - lastSave > SaveEvery)
                {
                    Save();
                    lastSave = clock.GetUtcNow();
                }
            }
            _state = _state with { ChunkId = chunk.Id + 1, Offset = 0 };
        }
        _state = _state with { LastCompletedUnixMs = clock.GetUtcNow().ToUnixTimeMilliseconds(), PassesCompleted = _state.PassesCompleted + 1 };
        Save();
        log.LogInformation("Scrub pass completed: {BytesVerified} bytes verified in total, {BadFound} bad found", _state.BytesVerified, _state.BadFound);
    }

    private async Task PaceAsync(int bytes, CancellationToken ct)
    {
        var wait = _bucket.Take(bytes);
        var s = Math.Clamp(share(), 1.0 / 16, 1);
        if (s < 1 && bytesPerSecond > 0)
        {
            wait += TimeSpan.FromSeconds(bytes / (double)bytesPerSecond * (1 / s - 1));
        }
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, clock, ct).ConfigureAwait(false);
        }
    }

    private async Task ReportAsync(ulong chunkId, string reason)
    {
        try
        {
            await reportBad(chunkId, reason).ConfigureAwait(false);
        }
        catch (Exception error) when (error is not OperationCanceledException)
        {
            // The next pass finds it again.
            log.LogWarning("Reporting bad chunk {ChunkId} to the master failed: {Error}", chunkId, error.Message);
        }
    }

    private void Save()
    {
        try
        {
            _state.Save(progressPath);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            log.LogWarning("Saving scrub progress to {Path} failed: {Error}", progressPath, error.Message);
        }
    }
}
