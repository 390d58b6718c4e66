using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Replication;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Security;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>
/// Serves the framed append protocol (<see cref="AppendStreamWire"/>) on the gRPC port: a connection
/// middleware after TLS that takes a connection opening with the preface and hands every other one to
/// HTTP/2. A framed stream follows the AppendStream call's rules: the same roles may open it (checked
/// against the client certificate of the TLS connection), the same session applies its frames, and it
/// ends with the status the call would have ended with. Counted under method "AppendStream".
/// </summary>
public sealed class FramedAppendEndpoint(ChunkStore store, ChunkServerMetrics metrics, RebuildBudget rebuild, int maxBodyBytes,
    ComponentTls? tls, RpcRoleTable roles, RpcRefusals? refusals, ILogger<FramedAppendEndpoint> log)
{
    private const string Method = "AppendStream";

    /// <summary>A client has this long to send its first bytes before the connection is closed.</summary>
    public static readonly TimeSpan PrefaceTimeout = TimeSpan.FromSeconds(30);

    public Func<ConnectionDelegate, ConnectionDelegate> Middleware => next => connection => HandleAsync(connection, next);

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        bool framed;
        try
        {
            using var first = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
            first.CancelAfter(PrefaceTimeout);
            framed = await AppendStreamWire.ReadPrefaceAsync(connection.Transport.Input, first.Token).ConfigureAwait(false);
        }
        catch (Exception error) when (error is AppendWireException or OperationCanceledException or IOException)
        {
            log.LogDebug("Closed a connection from {Peer} before it said what it speaks: {Message}", connection.RemoteEndPoint, error.Message);
            return;
        }
        if (!framed)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }
        await ServeAsync(connection).ConfigureAwait(false);
    }

    private async Task ServeAsync(ConnectionContext connection)
    {
        var started = Stopwatch.GetTimestamp();
        var reason = "ok";
        // With TLS, the stream the connection's pipe decrypts from: large payloads are read from it directly.
        var wire = new FramedAppendConnection(connection.Transport, maxBodyBytes, connection.Features.Get<ISslStreamFeature>()?.SslStream);
        var stopping = connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested ?? CancellationToken.None;
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, stopping);
        using var scope = log.BeginScope("{Method} (framed) from {Peer}", Method, connection.RemoteEndPoint);
        AppendFrameError status;
        try
        {
            if (Refusal(connection) is { } refused)
            {
                reason = refused.Reason;
                status = refused;
            }
            else
            {
                await wire.WriteReadyAsync().ConfigureAwait(false);
                await new AppendStreamSession(store, metrics, rebuild, wire, log).RunAsync(wire, ended.Token).ConfigureAwait(false);
                status = new AppendFrameError();
            }
        }
        catch (Exception error)
        {
            status = StatusOf(error, ended.IsCancellationRequested);
            reason = status.Reason;
        }
        finally
        {
            metrics.Requests.WithLabels(Method, reason).Inc();
            metrics.RequestDuration.WithLabels(Method).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        try
        {
            await wire.WriteStatusAsync(status).ConfigureAwait(false);
            await connection.Transport.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception error) when (error is IOException or InvalidOperationException or OperationCanceledException)
        {
            log.LogDebug("Framed append status {Code} not delivered: {Message}", status.Code, error.Message);
        }
    }

    /// <summary>With TLS, the caller's certificate must be the cluster's and of a role that may call AppendStream.</summary>
    private AppendFrameError? Refusal(ConnectionContext connection)
    {
        if (tls is null)
        {
            return null;
        }
        var certificate = connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate;
        var (kind, role, code, detail) = certificate is null
            ? (RpcRefusals.NoCertificate, "-", StatusCode.Unauthenticated, "no client certificate: every call needs a certificate issued by this cluster's CA")
            : tls.CheckCached(certificate) switch
            {
                { Trusted: false } check => (RpcRefusals.Untrusted, "-", StatusCode.Unauthenticated, check.Refusal!),
                var check when !roles.IsAllowed(AppendStreamWire.MethodName, check.Role!) =>
                    (RpcRefusals.WrongRole, check.Role!, StatusCode.PermissionDenied,
                        $"role {check.Role} may not call {AppendStreamWire.MethodName} (allowed: {string.Join(", ", roles.AllowedRoles(AppendStreamWire.MethodName).Order(StringComparer.Ordinal))})"),
                _ => (null, "", StatusCode.OK, ""),
            };
        if (kind is null)
        {
            return null;
        }
        refusals?.Count(kind, AppendStreamWire.MethodName, role);
        log.LogWarning("Refused {Method} (framed) from {Peer} ({Reason}): {Message}", AppendStreamWire.MethodName, connection.RemoteEndPoint, kind, detail);
        return new AppendFrameError { Code = (int)code, Reason = kind, Detail = detail };
    }

    /// <summary>The status the gRPC call would have ended with, as <see cref="ChunkServerInterceptor"/> maps it.</summary>
    private AppendFrameError StatusOf(Exception error, bool callerGone)
    {
        switch (error)
        {
            case ChunkStoreException refused:
                var status = AppendStreamSession.ToFrameError(refused);
                log.Log(refused.Error is ChunkError.Corrupt or ChunkError.IoError ? LogLevel.Error : LogLevel.Debug, refused.InnerException,
                    "{Method} (framed) refused ({Reason}): {Message}", Method, status.Reason, refused.Message);
                return status;
            case RpcException rpc:
                return new AppendFrameError { Code = (int)rpc.StatusCode, Reason = FeitianStatus.ReasonOf(rpc) ?? rpc.StatusCode.ToString(), Detail = rpc.Status.Detail };
            case IOException:
            case OperationCanceledException when callerGone:
                return new AppendFrameError { Code = (int)StatusCode.Cancelled, Reason = "cancelled", Detail = $"{Method} cancelled: {error.Message}" };
            default:
                log.LogCritical(error, "{Method} (framed) failed unexpectedly", Method);
                return new AppendFrameError { Code = (int)StatusCode.Internal, Reason = ChunkErrorMapping.IoErrorReason, Detail = $"{Method} failed: {error.Message}" };
        }
    }
}
