using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// Maps the name a CO gives CreateVolume (any string of up to 128 bytes, CSI spec) to the
/// volume id the master accepts (a DNS-1123 subdomain). A name that already is one is its
/// own id (<c>pvc-…</c> from the external-provisioner); any other name becomes
/// <c>v-</c> + 40 hex digits of its SHA-256. Ids of that form are reserved for hashed
/// names, so a name that looks like one is hashed too and can never take another name's id.
/// The CO's name is kept in the volume's <see cref="NameLabel"/>: create compares it, so two
/// names never share a volume even if their hashes collided.
/// </summary>
public static partial class VolumeIds
{
    public const int MaxNameBytes = 128;
    public const string NameLabel = VolumeParameters.LabelPrefix + "name";
    private const string HashedPrefix = "v-";
    private const int HashHexDigits = 40;

    /// <summary>INVALID_ARGUMENT unless the name is one the CSI spec allows.</summary>
    public static void RequireValidName(string name) => RequireValidName(name, "CreateVolume");

    /// <summary>INVALID_ARGUMENT unless the name is one the CSI spec allows; <paramref name="call"/> names the RPC in the message.</summary>
    public static void RequireValidName(string name, string call)
    {
        CsiErrors.Require(name.Length > 0, $"{call}: name is missing");
        var bytes = Encoding.UTF8.GetByteCount(name);
        CsiErrors.Require(bytes <= MaxNameBytes, $"{call}: name is {bytes} bytes long; the CSI spec allows at most {MaxNameBytes}");
        CsiErrors.Require(!name.Any(char.IsControl), $"{call}: name contains control characters");
    }

    public static string FromName(string name) => Map(name, HashedPrefix, ReservedHashedId());

    /// <summary>The name itself when it is a DNS-1123 subdomain that <paramref name="reserved"/> does not match, else <paramref name="prefix"/> + 40 hex digits of its SHA-256.</summary>
    internal static string Map(string name, string prefix, Regex reserved)
    {
        if (Dns1123Subdomain().IsMatch(name) && !reserved.IsMatch(name))
        {
            return name;
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(name));
        return prefix + Convert.ToHexStringLower(hash)[..HashHexDigits];
    }

    /// <summary>The CO's name of a volume: its label, or its id for volumes made before names were mapped (or outside the CSI driver).</summary>
    public static string NameOf(string id, IReadOnlyDictionary<string, string> labels) => labels.GetValueOrDefault(NameLabel, id);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", RegexOptions.CultureInvariant)]
    private static partial Regex Dns1123Subdomain();

    [GeneratedRegex("^v-[0-9a-f]{40}$", RegexOptions.CultureInvariant)]
    private static partial Regex ReservedHashedId();
}
