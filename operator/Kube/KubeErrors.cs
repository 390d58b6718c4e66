using System.Net;
using k8s.Autorest;

namespace FeitianK8s.Operator.Kube;

public enum KubeErrorClass
{
    NotFound,
    /// <summary>409: a stale resourceVersion or an object that already exists. Requeue and re-read.</summary>
    Conflict,
    /// <summary>410: a watch or list resourceVersion too old. Re-list.</summary>
    Gone,
    /// <summary>400/422: the API refused the object itself. Retrying the same request cannot help.</summary>
    Invalid,
    /// <summary>401/403: missing RBAC. Needs an administrator.</summary>
    Forbidden,
    /// <summary>429, 5xx, timeouts and connection errors: retry with backoff.</summary>
    Transient,
}

/// <summary>Classifies API errors by HTTP status code (never by message text).</summary>
public static class KubeErrors
{
    public static KubeErrorClass Classify(Exception e) => e switch
    {
        HttpOperationException h => FromStatus((int)h.Response.StatusCode),
        k8s.KubernetesException k when k.Status?.Code is { } code => FromStatus(code),
        _ => KubeErrorClass.Transient,
    };

    public static bool Is(Exception e, KubeErrorClass c) => Classify(e) == c;

    public static KubeErrorClass FromStatus(int code) => code switch
    {
        (int)HttpStatusCode.NotFound => KubeErrorClass.NotFound,
        (int)HttpStatusCode.Conflict => KubeErrorClass.Conflict,
        (int)HttpStatusCode.Gone => KubeErrorClass.Gone,
        (int)HttpStatusCode.BadRequest or (int)HttpStatusCode.UnprocessableEntity => KubeErrorClass.Invalid,
        (int)HttpStatusCode.Unauthorized or (int)HttpStatusCode.Forbidden => KubeErrorClass.Forbidden,
        _ => KubeErrorClass.Transient,
    };
}
