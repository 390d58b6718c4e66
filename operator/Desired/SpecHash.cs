using System.Security.Cryptography;
using System.Text;
using k8s;

namespace FeitianK8s.Operator.Desired;

/// <summary>
/// Content hash of a desired object. The operator stamps it in an annotation and replaces an
/// existing object only when the hash differs, so defaulted fields the API server adds never
/// cause an update loop.
/// </summary>
public static class SpecHash
{
    public static string Of(object value)
    {
        var json = KubernetesJson.Serialize(value);
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(json)))[..16].ToLowerInvariant();
    }
}
