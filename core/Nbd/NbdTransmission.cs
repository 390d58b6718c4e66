using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using FeitianK8s.Core.Block;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// The transmission phase of one connection. The reader parses requests in order and starts each
/// without waiting for it (inline, except a read while further requests are buffered: that goes to the thread pool), so many requests are in flight at once and replies go out in completion
/// order. Each reply is written whole under <see cref="_sendLock"/>, so replies never interleave.
/// FLUSH needs no ordering of its own: every write replied to before the FLUSH arrived has
/// completed on the device, and <see cref="IBlockDevice.FlushAsync"/> covers every completed write.
/// </summary>
internal sealed class NbdTransmission(PipeReader reader, Stream output, NbdExport export, NbdServerOptions options, ILogger logger)
{
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly NbdInFlightBudget _budget = new(options.MaxInFlightRequests, options.MaxInFlightBytes);
    private readonly byte[] _header = new byte[NbdProtocol.RequestHeaderLength];
    private readonly IBlockDevice _device = export.Device;
    private readonly string _exportLabel = export.Device.Name;
    private readonly CancellationTokenSource _broken = new();

    /// <summary>
    /// Cancelled when the server stops or the client is gone. In-flight device operations see it too:
    /// on shutdown they end early with ESHUTDOWN (the spec allows erroring in-flight requests) rather
    /// than holding the shutdown hostage to a stuck device.
    /// </summary>
    private CancellationTokenSource _operations = new();

    public async Task RunAsync(CancellationToken ct)
    {
        _operations = CancellationTokenSource.CreateLinkedTokenSource(ct, _broken.Token);
        CancellationToken token = _operations.Token;
        try
        {
            while (true)
            {
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
            await _budget.WaitForDrainAsync().ConfigureAwait(false);
            _operations.Dispose();
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
        await _budget.AcquireAsync(length, ct).ConfigureAwait(false);
        byte[] payload = ArrayPool<byte>.Shared.Rent(length);
        bool dispatched = false;
        try
        {
            if (!await NbdPipe.ReadExactlyAsync(reader, payload.AsMemory(0, length), "write payload", ct).ConfigureAwait(false) && length > 0)
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
        await _budget.AcquireAsync(cost, ct).ConfigureAwait(false);
        Dispatch(request, null, cost);
    }

    private void Dispatch(NbdRequest request, byte[]? payload, long cost)
    {
        NbdMetrics.InFlightRequests.Inc();
        if (request.Command == NbdCommand.Read && MoreRequestsBuffered())
        {
            // Others are already waiting to be parsed: run this read on the pool, in parallel with them.
            // (Writes only queue for the volume's single log writer, so they gain nothing from the hop.)
            ThreadPool.UnsafeQueueUserWorkItem(
                static state => _ = state.Self.ExecuteAsync(state.Request, state.Payload, state.Cost),
                (Self: this, Request: request, Payload: payload, Cost: cost),
                preferLocal: false);
        }
        else
        {
            // Nothing else to parse: start it inline (it runs until its first asynchronous wait). A read the
            // device completes synchronously (e.g. from a local replica) is answered without a thread hop.
            _ = ExecuteAsync(request, payload, cost);
        }
    }

    /// <summary>True when bytes of a further request are already buffered (peeks without consuming).</summary>
    private bool MoreRequestsBuffered()
    {
        if (!reader.TryRead(out ReadResult peek))
            return false;
        bool more = !peek.Buffer.IsEmpty;
        reader.AdvanceTo(peek.Buffer.Start);
        return more;
    }

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
                    NbdMetrics.ReadBytes.WithLabels(_exportLabel).Inc(length);
                    break;
                case NbdCommand.Write:
                    await _device.WriteAsync(offset, payload.AsMemory(0, length), fua, ct).ConfigureAwait(false);
                    NbdMetrics.WrittenBytes.WithLabels(_exportLabel).Inc(length);
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
                await SendAsync(readBuffer.AsMemory(0, NbdProtocol.SimpleReplyHeaderLength + (int)request.Length)).ConfigureAwait(false);
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
            string command = NbdMetrics.CommandLabel(request.Command);
            NbdMetrics.Requests.WithLabels(_exportLabel, command).Inc();
            if (error != NbdError.None)
                NbdMetrics.RequestErrors.WithLabels(_exportLabel, command, NbdMetrics.ErrorLabel(error)).Inc();
            NbdMetrics.RequestDuration.WithLabels(command).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            NbdMetrics.InFlightRequests.Dec();
            _budget.Release(cost);
        }
    }

    private void LogRejected(in NbdRequest request, NbdError error)
    {
        logger.LogInformation("NBD rejected {Command} (flags {Flags}) at offset {Offset} length {Length} on {Export} (size {Size}): {Error}",
            request.Command, request.Flags, request.Offset, request.Length, _exportLabel, _device.Size, error);
        string command = NbdMetrics.CommandLabel(request.Command);
        NbdMetrics.Requests.WithLabels(_exportLabel, command).Inc();
        NbdMetrics.RequestErrors.WithLabels(_exportLabel, command, NbdMetrics.ErrorLabel(error)).Inc();
    }

    /// <summary>A simple reply without payload (also the whole answer to a failed READ, as the spec allows).</summary>
    private async ValueTask SendErrorAsync(NbdRequest request, NbdError error, CancellationToken ct)
    {
        byte[] reply = ArrayPool<byte>.Shared.Rent(NbdProtocol.SimpleReplyHeaderLength);
        try
        {
            NbdRequest.WriteSimpleReply(reply, error, request.Handle);
            await SendAsync(reply.AsMemory(0, NbdProtocol.SimpleReplyHeaderLength)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(reply);
        }
        ct.ThrowIfCancellationRequested();
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> message)
    {
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_broken.IsCancellationRequested)
                return;
            await output.WriteAsync(message).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            // The client is gone; stop reading and let in-flight requests drain.
            logger.LogInformation("NBD reply could not be sent, closing the connection: {Reason}", ex.Message);
            _broken.Cancel();
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
