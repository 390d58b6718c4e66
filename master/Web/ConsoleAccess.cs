using FeitianK8s.Core.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Web;

/// <summary>
/// Who may read the web console when the master runs with TLS: the same trust as its gRPC port.
/// The console is served only over HTTPS on the gRPC port, to a client certificate of the cluster
/// CA whose role is admin, operator or master (a follower forwarding to the leader): 401 without a
/// trusted certificate, 403 for another role, 403 on the plain HTTP port (which keeps /metrics and
/// /healthz for scrapers and probes) with how to reach the console. Refusals are logged and
/// counted in feitian_master_rpc_refused_total with the path as <c>method</c>.
/// Without TLS (<c>--insecure</c>) everyone is admitted, as on the gRPC port.
/// </summary>
public sealed class ConsoleAccess(ComponentTls? tls, RpcRefusals? refusals, ILogger<ConsoleAccess> log)
{
    public static readonly IReadOnlyList<string> ReaderRoles = [ComponentRoles.Admin, ComponentRoles.Operator, ComponentRoles.Master];

    /// <summary>True when the console is behind client certificates (the master has TLS).</summary>
    public bool Required => tls is not null;

    /// <summary>The caller's role when admitted (null without TLS), else the refusal to answer with.</summary>
    public (string? Role, IResult? Refusal) Check(HttpContext http)
    {
        if (tls is null)
        {
            return (null, null);
        }
        var path = http.Request.Path.Value ?? "/";
        if (!http.Request.IsHttps)
        {
            return (null, Refuse(http, RpcRefusals.NoCertificate, "-", StatusCodes.Status403Forbidden,
                "this port serves only /metrics and /healthz: the web console is served over HTTPS with a client certificate of the cluster's CA "
                + "(role admin, operator or master) on the master's gRPC port. From a workstation run `feitian console` "
                + "(with --data DIR, or --master https://HOST:GRPC_PORT --tls-ca/--tls-cert/--tls-key) and open the URL it prints.", path));
        }
        var certificate = http.Connection.ClientCertificate;
        if (certificate is null)
        {
            return (null, Refuse(http, RpcRefusals.NoCertificate, "-", StatusCodes.Status401Unauthorized,
                "no client certificate: the web console needs a certificate issued by this cluster's CA (role admin, operator or master); "
                + "`feitian console` opens it with the CLI's certificate", path));
        }
        var check = tls.CheckCached(certificate);
        if (!check.Trusted)
        {
            return (null, Refuse(http, RpcRefusals.Untrusted, "-", StatusCodes.Status401Unauthorized, check.Refusal!, path));
        }
        if (!ReaderRoles.Contains(check.Role!, StringComparer.Ordinal))
        {
            return (null, Refuse(http, RpcRefusals.WrongRole, check.Role!, StatusCodes.Status403Forbidden,
                $"role {check.Role} may not read the web console (allowed: {string.Join(", ", ReaderRoles)})", path));
        }
        return (check.Role, null);
    }

    private IResult Refuse(HttpContext http, string reason, string role, int status, string message, string path)
    {
        refusals?.Count(reason, path, role);
        log.LogWarning("Refused console {Path} from {Peer} ({Reason}): {Message}", path, http.Connection.RemoteIpAddress, reason, message);
        return Results.Text(message + "\n", "text/plain; charset=utf-8", statusCode: status);
    }
}
