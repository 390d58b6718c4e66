using Grpc.AspNetCore.Server;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Security;

/// <summary>
/// Admits a call only from a client certificate of the cluster CA whose role the
/// <see cref="RpcRoleTable"/> allows for the method: UNAUTHENTICATED without a trusted
/// certificate, PERMISSION_DENIED for a role the method does not allow. Each refusal is logged
/// with the caller's address and counted in <see cref="RpcRefusals"/>.
/// </summary>
public sealed class RpcAuthorizationInterceptor(ComponentTls tls, RpcRoleTable table, RpcRefusals refusals, ILogger<RpcAuthorizationInterceptor> log) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context,
        ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        var certificate = http.Connection.ClientCertificate;
        if (certificate is null)
        {
            throw Refuse(context, RpcRefusals.NoCertificate, "-", StatusCode.Unauthenticated,
                "no client certificate: every call needs a certificate issued by this cluster's CA");
        }
        var check = tls.CheckCached(certificate);
        if (!check.Trusted)
        {
            throw Refuse(context, RpcRefusals.Untrusted, "-", StatusCode.Unauthenticated, check.Refusal!);
        }
        if (!table.IsAllowed(context.Method, check.Role!))
        {
            var allowed = table.AllowedRoles(context.Method);
            throw Refuse(context, RpcRefusals.WrongRole, check.Role!, StatusCode.PermissionDenied,
                $"role {check.Role} may not call {context.Method} (allowed: {(allowed.Count == 0 ? "nobody" : string.Join(", ", allowed.Order(StringComparer.Ordinal)))})");
        }
    }

    private RpcException Refuse(ServerCallContext context, string reason, string role, StatusCode code, string message)
    {
        refusals.Count(reason, context.Method, role);
        log.LogWarning("Refused {Method} from {Peer} ({Reason}): {Message}", context.Method, context.Peer, reason, message);
        return new RpcException(new Status(code, message));
    }
}
