using System.Buffers;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// Sends the replies of one connection, each whole (replies never interleave). A reply produced while
/// the connection's reader is still dispatching (a request the device completed synchronously, e.g. a
/// read from a local replica) may be held and sent together with the next ones: the reader calls
/// <see cref="FlushHeldAsync"/> before it waits for anything, so a held reply never waits on the client.
/// At queue depth 32 this turns 32 small socket writes into one. A reply completed later (asynchronously)
/// is sent at once, after whatever is held, so replies keep their completion order.
/// </summary>
internal sealed class NbdReplySender(Stream output, ILogger logger) : IDisposable
{
    /// <summary>Replies larger than this are never copied into the held buffer.</summary>
    private const int MaxHeldReply = 64 * 1024;

    /// <summary>Held bytes beyond which the held replies are sent without waiting for the reader.</summary>
    private const int MaxHeldBytes = 256 * 1024;

    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly ArrayBufferWriter<byte> _held = new(MaxHeldBytes);
    private readonly CancellationTokenSource _broken = new();

    /// <summary>Cancelled once a send failed: the client is gone.</summary>
    public CancellationToken Broken => _broken.Token;

    public bool HasHeld => Volatile.Read(ref _heldCount) > 0;

    private int _heldCount;

    /// <param name="mayHold">True only on the reader's own dispatch path, which flushes before it waits.</param>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> reply, bool mayHold)
    {
        // A reply is held only when it joins the buffer before this call returns to the reader (the lock is
        // free at once): the reader checks for held replies right after its dispatch, and a reply that
        // queued behind another sender would reach the buffer after that check and wait forever.
        if (!_lock.Wait(0))
        {
            mayHold = false;
            await _lock.WaitAsync().ConfigureAwait(false);
        }
        try
        {
            if (_broken.IsCancellationRequested)
                return;
            if (mayHold && reply.Length <= MaxHeldReply && _held.WrittenCount + reply.Length <= MaxHeldBytes)
            {
                _held.Write(reply.Span);
                Volatile.Write(ref _heldCount, _heldCount + 1);
                return;
            }
            await WriteHeldAsync().ConfigureAwait(false);
            await output.WriteAsync(reply).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsClientGone(ex))
        {
            Break(ex);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Sends every held reply. The reader calls this before any wait.</summary>
    public async ValueTask FlushHeldAsync()
    {
        if (!HasHeld)
            return;
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_broken.IsCancellationRequested)
                await WriteHeldAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (IsClientGone(ex))
        {
            Break(ex);
        }
        finally
        {
            _lock.Release();
        }
    }

    private async ValueTask WriteHeldAsync()
    {
        if (_held.WrittenCount == 0)
            return;
        try
        {
            await output.WriteAsync(_held.WrittenMemory).ConfigureAwait(false);
        }
        finally
        {
            _held.ResetWrittenCount();
            Volatile.Write(ref _heldCount, 0);
        }
    }

    private static bool IsClientGone(Exception ex) => ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException;

    private void Break(Exception ex)
    {
        // The client is gone; the reader stops and in-flight requests drain.
        logger.LogInformation("NBD reply could not be sent, closing the connection: {Reason}", ex.Message);
        _broken.Cancel();
    }

    public void Dispose()
    {
        _lock.Dispose();
        _broken.Dispose();
    }
}
