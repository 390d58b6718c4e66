using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Controller;

/// <summary>
/// StorageClass parameters of CreateVolume: <c>replicas</c> (1..5, default 3), <c>rackSpread</c>
/// (true/false, default true), <c>fsType</c> (ext4 or xfs, default ext4). Kept in the volume's labels.
/// </summary>
public sealed record VolumeParameters(int Replicas, bool RackSpread, string FsType)
{
    public const string ReplicasKey = "replicas";
    public const string RackSpreadKey = "rackSpread";
    public const string FsTypeKey = "fsType";
    public const string LabelPrefix = "csi.feitian.io/";

    public static VolumeParameters Parse(IReadOnlyDictionary<string, string> parameters)
    {
        var replicas = 3;
        var rackSpread = true;
        var fsType = "ext4";
        foreach (var (key, value) in parameters)
        {
            switch (key)
            {
                case ReplicasKey:
                    CsiErrors.Require(int.TryParse(value, out replicas) && replicas is >= 1 and <= 5,
                        $"parameter replicas must be an integer from 1 to 5 (got '{value}')");
                    break;
                case RackSpreadKey:
                    CsiErrors.Require(bool.TryParse(value, out rackSpread), $"parameter rackSpread must be true or false (got '{value}')");
                    break;
                case FsTypeKey:
                    CsiErrors.Require(CapabilityRules.FileSystems.Contains(value), $"parameter fsType must be ext4 or xfs (got '{value}')");
                    fsType = value;
                    break;
                default:
                    // Sidecars add csi.storage.k8s.io/* keys (PVC name/namespace): not ours, ignored.
                    CsiErrors.Require(key.StartsWith("csi.storage.k8s.io/", StringComparison.Ordinal),
                        $"unknown parameter '{key}' (known: replicas, rackSpread, fsType)");
                    break;
            }
        }
        return new VolumeParameters(replicas, rackSpread, fsType);
    }

    public Dictionary<string, string> ToLabels() => new(StringComparer.Ordinal)
    {
        [LabelPrefix + "rack-spread"] = RackSpread ? "true" : "false",
        [LabelPrefix + "fs-type"] = FsType,
        [LabelPrefix + "managed-by"] = CsiDriverOptions.DriverName,
    };

    public static VolumeParameters FromLabels(IReadOnlyDictionary<string, string> labels, int replicas) => new(
        replicas,
        labels.GetValueOrDefault(LabelPrefix + "rack-spread", "true") == "true",
        labels.GetValueOrDefault(LabelPrefix + "fs-type", "ext4"));

    public Dictionary<string, string> ToVolumeContext() => new(StringComparer.Ordinal)
    {
        [ReplicasKey] = Replicas.ToString(System.Globalization.CultureInfo.InvariantCulture),
        [RackSpreadKey] = RackSpread ? "true" : "false",
        [FsTypeKey] = FsType,
    };
}
