using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using FeitianK8s.Core.Block;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// The transmission phase of one connection. The reader parses requests in order and starts each
/// inline without waiting for it (it runs until its first asynchronous wait), so many requests are in
/// flight at once and replies go out in completion order. A request the device completes synchronously
/// (a read from a local replica) is answered without a thread hop, and its reply may be held by
/// <see cref="NbdReplySender"/> until the reader runs out of buffered requests: before any wait, the
/// reader sends what is held.
/// FLUSH needs no ordering of its own: every write replied to before the FLUSH arrived has
/// completed on the device, and <see cref="IBlockDevice.FlushAsync"/> covers every completed write.
/// </summary>
internal sealed class NbdTransmission(PipeReader reader, Stream connection, NbdExport export, NbdServerOptions options, ILogger logger)
{
    private readonly NbdReplySender _sender = new(connection, logger);
    private readonly NbdInFlightBudget _budget = new(options.MaxInFlightRequests, options.MaxInFlightBytes);
    private readonly byte[] _header = new byte[NbdProtocol.RequestHeaderLength];
    private readonly IBlockDevice _device = export.Device;
    private readonly string _exportLabel = export.Device.Name;
    private readonly NbdExportMetrics _metrics = new(export.Device.Name);
    /// <summary>Managed thread id of the reader while it dispatches a request; -1 otherwise.</summary>
    private int _dispatchingThread = -1;

    /// <summary>
    /// Cancelled when the server stops or the client is gone. In-flight device operations see it too:
    /// on shutdown they end early with ESHUTDOWN (the spec allows erroring in-flight requests) rather
    /// than holding the shutdown hostage to a stuck device.
    /// </summary>
    private CancellationTokenSource _operations = new();

    public async Task RunAsync(CancellationToken ct)
    {
        _operations = CancellationTokenSource.CreateLinkedTokenSource(ct, _sender.Broken);
        CancellationToken token = _operations.Token;
        try
        {
            while (true)
            {
                await FlushHeldUnlessBufferedAsync(NbdProtocol.RequestHeaderLength).ConfigureAwait(false);
                if (!await NbdPipe.ReadExactlyAsync(reader, _header, "request header", token).ConfigureAwait(false))
                {
                    logger.LogInformation("NBD client closed the connection without NBD_CMD_DISC");
                    return;
                }
                var request = NbdRequest.Parse(_header);
                if (request.Command == NbdCommand.Disconnect)
                {
                    logger.LogInformation("NBD client disconnected (NBD_CMD_DISC)");
                    return;
                }
                if (request.Command == NbdCommand.Write)
                    await ReceiveWriteAsync(request, token).ConfigureAwait(false);
                else
                    await ReceiveCommandAsync(request, token).ConfigureAwait(false);
            }
        }
        finally
        {
            // The spec: handle all outstanding requests before closing.
            await _sender.FlushHeldAsync().ConfigureAwait(false);
            await _budget.WaitForDrainAsync().ConfigureAwait(false);
            await _sender.FlushHeldAsync().ConfigureAwait(false);
            _operations.Dispose();
            _sender.Dispose();
        }
    }

    private async Task ReceiveWriteAsync(NbdRequest request, CancellationToken ct)
    {
        if (request.Length > options.MaximumPayloadSize)
        {
            // The payload cannot be read safely, so the stream cannot be resynchronised: answer, then close.
            await SendErrorAsync(request, NbdError.Inval, ct).ConfigureAwait(false);
            throw new NbdProtocolException($"NBD_CMD_WRITE of {request.Length} bytes at offset {request.Offset} exceeds the maximum payload {options.MaximumPayloadSize}");
        }
        int length = (int)request.Length;
        await AcquireBudgetAsync(length, ct).ConfigureAwait(false);
        await FlushHeldUnlessBufferedAsync(length).ConfigureAwait(false);
        byte[] payload = ArrayPool<byte>.Shared.Rent(length);
        bool dispatched = false;
        try
        {
            if (!await NbdPipe.ReadExactlyAsync(reader, connection, payload.AsMemory(0, length), "write payload", ct).ConfigureAwait(false) && length > 0)
                throw new NbdProtocolException($"connection closed before the payload of a {length}-byte write at offset {request.Offset}");
            NbdError error = NbdRequestValidator.Validate(request, _device, options.MaximumPayloadSize);
            if (error != NbdError.None)
            {
                LogRejected(request, error);
                await SendErrorAsync(request, error, ct).ConfigureAwait(false);
                return;
            }
            Dispatch(request, payload, length);
            dispatched = true;
        }
        finally
        {
            if (!dispatched)
            {
                ArrayPool<byte>.Shared.Return(payload);
                _budget.Release(length);
            }
        }
    }

    private async Task ReceiveCommandAsync(NbdRequest request, CancellationToken ct)
    {
        NbdError error = NbdRequestValidator.Validate(request, _device, options.MaximumPayloadSize);
        if (error != NbdError.None)
        {
            LogRejected(request, error);
            await SendErrorAsync(request, error, ct).ConfigureAwait(false);
            return;
        }
        long cost = request.Command == NbdCommand.Read ? request.Length : 0;
        await AcquireBudgetAsync(cost, ct).ConfigureAwait(false);
        Dispatch(request, null, cost);
    }

    private async ValueTask AcquireBudgetAsync(long cost, CancellationToken ct)
    {
        ValueTask acquiring = _budget.AcquireAsync(cost, ct);
        if (!acquiring.IsCompleted)
            await _sender.FlushHeldAsync().ConfigureAwait(false);
        await acquiring.ConfigureAwait(false);
    }

    /// <summary>Sends held replies unless <paramref name="bytes"/> of input are already buffered (the reader will not wait for them).</summary>
    private ValueTask FlushHeldUnlessBufferedAsync(int bytes)
    {
        if (!_sender.HasHeld || Buffered() >= bytes)
            return ValueTask.CompletedTask;
        return _sender.FlushHeldAsync();
    }

    private void Dispatch(NbdRequest request, byte[]? payload, long cost)
    {
        NbdMetrics.InFlightRequests.Inc();
        // Started inline: it runs until its first asynchronous wait. A request the device completes
        // synchronously (a read from a local replica) is answered here, without a thread hop.
        Volatile.Write(ref _dispatchingThread, Environment.CurrentManagedThreadId);
        try
        {
            _ = ExecuteAsync(request, payload, cost);
        }
        finally
        {
            Volatile.Write(ref _dispatchingThread, -1);
        }
    }

    /// <summary>Bytes of input already buffered (peeks without consuming).</summary>
    private long Buffered()
    {
        if (!reader.TryRead(out ReadResult peek))
            return 0;
        long length = peek.Buffer.Length;
        reader.AdvanceTo(peek.Buffer.Start);
        return length;
    }

    /// <summary>True on the reader's own dispatch path, whose replies may be held (it flushes before it waits).</summary>
    private bool OnReaderDispatch() => Volatile.Read(ref _dispatchingThread) == Environment.CurrentManagedThreadId;

    private async Task ExecuteAsync(NbdRequest request, byte[]? payload, long cost)
    {
        long started = Stopwatch.GetTimestamp();
        byte[]? readBuffer = null;
        NbdError error = NbdError.None;
        try
        {
            CancellationToken ct = _operations.Token;
            bool fua = request.Flags.HasFlag(NbdCommandFlags.Fua);
            long offset = (long)request.Offset;
            int length = (int)request.Length;
            switch (request.Command)
            {
                case NbdCommand.Read:
                    readBuffer = ArrayPool<byte>.Shared.Rent(NbdProtocol.SimpleReplyHeaderLength + length);
                    await _device.ReadAsync(offset, readBuffer.AsMemory(NbdProtocol.SimpleReplyHeaderLength, length), ct).ConfigureAwait(false);
                    _metrics.ReadBytes.Inc(length);
                    break;
                case NbdCommand.Write:
                    await _device.WriteAsync(offset, payload.AsMemory(0, length), fua, ct).ConfigureAwait(false);
                    _metrics.WrittenBytes.Inc(length);
                    break;
                case NbdCommand.Flush:
                    await _device.FlushAsync(ct).ConfigureAwait(false);
                    break;
                case NbdCommand.Trim:
                    await _device.TrimAsync(offset, request.Length, ct).ConfigureAwait(false);
                    if (fua)
                        await _device.FlushAsync(ct).ConfigureAwait(false);
                    break;
                case NbdCommand.WriteZeroes:
                    await _device.WriteZeroesAsync(offset, request.Length, fua, ct).ConfigureAwait(false);
                    break;
                default:
                    throw new UnreachableException($"validated command {request.Command}");
            }
        }
        catch (Exception ex)
        {
            error = NbdErrorMapper.Map(ex);
            if (ex is BlockDeviceException or OperationCanceledException)
                logger.LogWarning(ex, "NBD {Command} at offset {Offset} length {Length} on {Export} failed: {Error}",
                    request.Command, request.Offset, request.Length, _exportLabel, error);
            else
                logger.LogError(ex, "NBD {Command} at offset {Offset} length {Length} on {Export} threw unexpectedly: {Error}",
                    request.Command, request.Offset, request.Length, _exportLabel, error);
        }

        try
        {
            if (error == NbdError.None && readBuffer is not null)
            {
                NbdRequest.WriteSimpleReply(readBuffer, NbdError.None, request.Handle);
                await _sender.SendAsync(readBuffer.AsMemory(0, NbdProtocol.SimpleReplyHeaderLength + (int)request.Length), OnReaderDispatch()).ConfigureAwait(false);
            }
            else
            {
                await SendErrorAsync(request, error, CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            if (readBuffer is not null)
                ArrayPool<byte>.Shared.Return(readBuffer);
            if (payload is not null)
                ArrayPool<byte>.Shared.Return(payload);
            _metrics.Requests(request.Command).Inc();
            if (error != NbdError.None)
                NbdMetrics.RequestErrors.WithLabels(_exportLabel, NbdMetrics.CommandLabel(request.Command), NbdMetrics.ErrorLabel(error)).Inc();
            _metrics.Duration(request.Command).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            NbdMetrics.InFlightRequests.Dec();
            _budget.Release(cost);
        }
    }

    private void LogRejected(in NbdRequest request, NbdError error)
    {
        logger.LogInformation("NBD rejected {Command} (flags {Flags}) at offset {Offset} length {Length} on {Export} (size {Size}): {Error}",
            request.Command, request.Flags, request.Offset, request.Length, _exportLabel, _device.Size, error);
        _metrics.Requests(request.Command).Inc();
        NbdMetrics.RequestErrors.WithLabels(_exportLabel, NbdMetrics.CommandLabel(request.Command), NbdMetrics.ErrorLabel(error)).Inc();
    }

    /// <summary>A simple reply without payload (also the whole answer to a failed READ, as the spec allows).</summary>
    private async ValueTask SendErrorAsync(NbdRequest request, NbdError error, CancellationToken ct)
    {
        byte[] reply = ArrayPool<byte>.Shared.Rent(NbdProtocol.SimpleReplyHeaderLength);
        try
        {
            NbdRequest.WriteSimpleReply(reply, error, request.Handle);
            await _sender.SendAsync(reply.AsMemory(0, NbdProtocol.SimpleReplyHeaderLength), OnReaderDispatch()).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(reply);
        }
        ct.ThrowIfCancellationRequested();
    }
}
