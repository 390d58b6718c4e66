using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace FeitianK8s.Core.Security;

/// <summary>
/// The roles a certificate of the cluster CA names, as a SAN URI <c>spiffe://feitian/role/ROLE</c>.
/// A server decides what a caller may do from this role alone (see <see cref="RpcRoleTable"/>).
/// </summary>
public static class ComponentRoles
{
    public const string Master = "master";
    public const string ChunkServer = "chunkserver";
    public const string CsiController = "csi-controller";
    /// <summary>The CSI node plugin and the volume hosts it starts: write their volumes.</summary>
    public const string CsiNode = "csi-node";
    public const string Operator = "operator";
    /// <summary>The `feitian` CLI and `feitian up`'s own volume server.</summary>
    public const string Admin = "admin";

    public const string UriPrefix = "spiffe://feitian/role/";

    public static readonly IReadOnlyList<string> All = [Master, ChunkServer, CsiController, CsiNode, Operator, Admin];

    public static bool IsKnown(string role) => All.Contains(role, StringComparer.Ordinal);

    public static Uri ToUri(string role) => IsKnown(role)
        ? new Uri(UriPrefix + role)
        : throw new ArgumentException($"unknown role '{role}' (known: {string.Join(", ", All)})", nameof(role));

    /// <summary>The role named in the certificate's subject alternative names, or null when it names none (or more than one).</summary>
    public static string? Of(X509Certificate2 certificate)
    {
        string? role = null;
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }
            foreach (var uri in SanUris(extension.RawData))
            {
                if (uri.StartsWith(UriPrefix, StringComparison.Ordinal) && IsKnown(uri[UriPrefix.Length..]))
                {
                    if (role is not null)
                    {
                        return null;
                    }
                    role = uri[UriPrefix.Length..];
                }
            }
        }
        return role;
    }

    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    private static List<string> SanUris(byte[] der)
    {
        var uris = new List<string>();
        try
        {
            var names = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
            while (names.HasData)
            {
                if (names.PeekTag().HasSameClassAndValue(UriTag))
                {
                    uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }
        catch (AsnContentException)
        {
            // A malformed extension names no role.
        }
        return uris;
    }
}
