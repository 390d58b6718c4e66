using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace FeitianK8s.Operator.Resources;

/// <summary>cert-manager.io/v1 Issuer (from cert-manager's CRDs, not in k8s.Models): only the fields the operator sets.</summary>
public sealed class CertManagerIssuer : IKubernetesObject<V1ObjectMeta>
{
    public const string Group = "cert-manager.io";
    public const string Version = "v1";
    public const string Plural = "issuers";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = Group + "/" + Version;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "Issuer";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public IssuerSpec Spec { get; set; } = new();
}

public sealed class IssuerSpec
{
    /// <summary>A self-signed issuer (empty object); it signs only the cluster's root CA.</summary>
    [JsonPropertyName("selfSigned")]
    public Dictionary<string, string>? SelfSigned { get; set; }

    [JsonPropertyName("ca")]
    public CaIssuer? Ca { get; set; }
}

public sealed class CaIssuer
{
    [JsonPropertyName("secretName")]
    public string SecretName { get; set; } = "";
}

/// <summary>cert-manager.io/v1 Certificate: cert-manager keeps the Secret <c>spec.secretName</c> filled and renewed.</summary>
public sealed class CertManagerCertificate : IKubernetesObject<V1ObjectMeta>
{
    public const string Plural = "certificates";
    public const string CrdName = Plural + "." + CertManagerIssuer.Group;

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = CertManagerIssuer.Group + "/" + CertManagerIssuer.Version;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "Certificate";

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public CertificateSpec Spec { get; set; } = new();
}

public sealed class CertificateSpec
{
    [JsonPropertyName("secretName")]
    public string SecretName { get; set; } = "";

    [JsonPropertyName("commonName")]
    public string? CommonName { get; set; }

    [JsonPropertyName("isCA")]
    public bool? IsCa { get; set; }

    [JsonPropertyName("duration")]
    public string? Duration { get; set; }

    [JsonPropertyName("renewBefore")]
    public string? RenewBefore { get; set; }

    [JsonPropertyName("uris")]
    public IList<string>? Uris { get; set; }

    [JsonPropertyName("dnsNames")]
    public IList<string>? DnsNames { get; set; }

    [JsonPropertyName("usages")]
    public IList<string>? Usages { get; set; }

    [JsonPropertyName("privateKey")]
    public CertificatePrivateKey PrivateKey { get; set; } = new();

    [JsonPropertyName("secretTemplate")]
    public CertificateSecretTemplate? SecretTemplate { get; set; }

    [JsonPropertyName("issuerRef")]
    public IssuerReference IssuerRef { get; set; } = new();
}

public sealed class CertificatePrivateKey
{
    [JsonPropertyName("algorithm")]
    public string Algorithm { get; set; } = "ECDSA";

    [JsonPropertyName("size")]
    public int Size { get; set; } = 256;

    /// <summary>PKCS#8, the form the components read (and what the operator writes itself).</summary>
    [JsonPropertyName("encoding")]
    public string Encoding { get; set; } = "PKCS8";

    [JsonPropertyName("rotationPolicy")]
    public string RotationPolicy { get; set; } = "Always";
}

public sealed class CertificateSecretTemplate
{
    [JsonPropertyName("labels")]
    public IDictionary<string, string>? Labels { get; set; }
}

public sealed class IssuerReference
{
    [JsonPropertyName("name")]
    public string Name { get; set; } = "";

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = "Issuer";

    [JsonPropertyName("group")]
    public string Group { get; set; } = CertManagerIssuer.Group;
}
