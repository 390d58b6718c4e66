using System.IO.Pipelines;
using System.Net.Sockets;
using FeitianK8s.Core.Block;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// One accepted client: handshake, then transmission. Whatever goes wrong here (protocol
/// violation, client vanishing, unexpected exception) ends this connection only.
/// </summary>
internal sealed class NbdConnection(long id, Socket socket, IBlockDeviceProvider exports, NbdServerOptions options, ILogger logger)
{
    public long Id { get; } = id;

    public async Task RunAsync(CancellationToken serverStopping)
    {
        string remote = socket.RemoteEndPoint?.ToString() ?? "unix";
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["NbdConnection"] = Id, ["Remote"] = remote });
        NbdMetrics.Connections.Inc();
        NbdMetrics.ActiveConnections.Inc();
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
        try
        {
            NbdExport? export;
            using (var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(serverStopping))
            {
                handshakeTimeout.CancelAfter(options.HandshakeTimeout);
                var handshake = new NbdHandshake(reader, stream, exports, options, logger);
                try
                {
                    export = await handshake.NegotiateAsync(handshakeTimeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!serverStopping.IsCancellationRequested)
                {
                    throw new NbdProtocolException($"handshake not finished within {options.HandshakeTimeout}");
                }
            }
            if (export is null)
            {
                logger.LogInformation("NBD client aborted the handshake");
                return;
            }
            logger.LogInformation("NBD client attached to export {Export} ({Size} bytes, flags {Flags})", export.Device.Name, export.Device.Size, export.Flags);
            var transmission = new NbdTransmission(reader, stream, export, options, logger);
            await transmission.RunAsync(serverStopping).ConfigureAwait(false);
        }
        catch (NbdProtocolException ex)
        {
            NbdMetrics.ProtocolErrors.Inc();
            logger.LogWarning("NBD protocol violation, closing connection {Connection}: {Reason}", Id, ex.Message);
        }
        catch (OperationCanceledException) when (serverStopping.IsCancellationRequested)
        {
            logger.LogInformation("NBD connection {Connection} closed by server shutdown", Id);
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            logger.LogInformation("NBD connection {Connection} lost: {Reason}", Id, ex.Message);
        }
        catch (Exception ex)
        {
            logger.LogCritical(ex, "NBD connection {Connection} failed unexpectedly; closing it", Id);
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            NbdMetrics.ActiveConnections.Dec();
        }
    }
}
