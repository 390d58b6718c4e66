using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>
/// Turns refused operations into gRPC statuses with reasons, counts and times every call, and
/// contains unexpected exceptions: they are logged as critical and end only that call.
/// </summary>
public sealed class ChunkServerInterceptor(ChunkServerMetrics metrics, ILogger<ChunkServerInterceptor> log) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation) =>
        GuardAsync(context, () => continuation(request, context));

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        GuardAsync(context, async () =>
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
            return true;
        });

    private async Task<T> GuardAsync<T>(ServerCallContext context, Func<Task<T>> call)
    {
        var method = context.Method[(context.Method.LastIndexOf('/') + 1)..];
        var started = Stopwatch.GetTimestamp();
        var reason = "ok";
        using var scope = log.BeginScope("{Method} from {Peer}", method, context.Peer);
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (ChunkStoreException error)
        {
            var rpc = ChunkErrorMapping.ToRpcException(error);
            reason = FeitianStatus.ReasonOf(rpc) ?? "unknown";
            var level = error.Error switch
            {
                ChunkError.Corrupt or ChunkError.IoError => LogLevel.Error,
                ChunkError.DiskFull => LogLevel.Warning,
                _ => LogLevel.Debug,
            };
            log.Log(level, error.InnerException, "{Method} refused ({Reason}): {Message}", method, reason, error.Message);
            throw rpc;
        }
        catch (RpcException error)
        {
            reason = FeitianStatus.ReasonOf(error) ?? error.StatusCode.ToString();
            throw;
        }
        catch (Exception error) when ((error is OperationCanceledException or IOException) && context.CancellationToken.IsCancellationRequested)
        {
            // The caller went away (a stream reset reads as an IOException): not a server fault.
            reason = "cancelled";
            throw new RpcException(new Status(StatusCode.Cancelled, $"{method} cancelled by the caller"));
        }
        catch (Exception error)
        {
            reason = "internal";
            log.LogCritical(error, "{Method} failed unexpectedly", method);
            throw FeitianStatus.Error(StatusCode.Internal, ChunkErrorMapping.IoErrorReason, $"{method} failed: {error.Message}");
        }
        finally
        {
            metrics.Requests.WithLabels(method, reason).Inc();
            metrics.RequestDuration.WithLabels(method).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }
}
