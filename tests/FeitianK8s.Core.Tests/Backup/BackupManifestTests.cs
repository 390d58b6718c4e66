using System.Text;
using FeitianK8s.Core.Backup;

namespace FeitianK8s.Core.Tests.Backup;

/// <summary>Manifests and targets as parsed from hostile input: every bad one is a clear error, never a crash or a silently wrong backup.</summary>
public sealed class BackupManifestTests
{
    private static readonly string Hash = new('a', 64);

    private static BackupManifest Sample() => new("bk-20260101-000000-abcdef", "data", "s1", DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_123),
        (10L << 20) + 4096, 1 << 20, 3 << 20, DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_100_000),
        [new BackupBlock(0, Hash), new BackupBlock(10, new string('b', 64))]);

    private static BackupException ExpectCorrupt(string json)
    {
        var e = Assert.Throws<BackupException>(() => BackupManifest.Parse(Encoding.UTF8.GetBytes(json), "s3://b/backups/x.json"));
        Assert.Equal(BackupErrorKind.Corrupt, e.Kind);
        Assert.Contains("s3://b/backups/x.json", e.Message, StringComparison.Ordinal);
        return e;
    }

    [Fact]
    public void Round_trip_keeps_every_field_and_the_json_names_follow_the_contract()
    {
        var manifest = Sample();
        var bytes = manifest.Serialize();
        var parsed = BackupManifest.Parse(bytes, "test");
        Assert.Equal(manifest with { Blocks = [] }, parsed with { Blocks = [] });
        Assert.Equal(manifest.Blocks, parsed.Blocks);
        Assert.Equal(11, parsed.BlockCount);
        var json = Encoding.UTF8.GetString(bytes);
        foreach (var field in new[] { "\"id\"", "\"volume\"", "\"snapshot\"", "\"sizeBytes\"", "\"uploadedBytes\"", "\"createdAt\"", "\"blocks\"", "\"sha256\"" })
        {
            Assert.Contains(field, json, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Truncated_manifests_are_refused_at_every_length()
    {
        var bytes = Sample().Serialize();
        for (var length = 0; length < bytes.Length; length++)
        {
            var e = Assert.Throws<BackupException>(() => BackupManifest.Parse(bytes.AsSpan(0, length), "cut"));
            Assert.Equal(BackupErrorKind.Corrupt, e.Kind);
        }
    }

    [Fact]
    public void Garbage_and_inconsistent_manifests_are_refused_with_the_reason()
    {
        Assert.Contains("not a backup manifest", ExpectCorrupt("\u0000\u00ff garbage").Message, StringComparison.Ordinal);
        Assert.Contains("not a backup manifest", ExpectCorrupt("null").Message, StringComparison.Ordinal);
        Assert.Contains("not a backup manifest", ExpectCorrupt("[1,2,3]").Message, StringComparison.Ordinal);
        Assert.Contains("format", ExpectCorrupt("{}").Message, StringComparison.Ordinal);
        var good = Encoding.UTF8.GetString(Sample().Serialize());
        Assert.Contains("id", ExpectCorrupt(good.Replace("bk-20260101-000000-abcdef", "../../x", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("blockSize", ExpectCorrupt(good.Replace("\"blockSize\":1048576", "\"blockSize\":1000", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("sizeBytes", ExpectCorrupt(good.Replace("\"sizeBytes\":10489856", "\"sizeBytes\":-5", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("outside", ExpectCorrupt(good.Replace("\"index\":10", "\"index\":11", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("repeated", ExpectCorrupt(good.Replace("\"index\":10", "\"index\":0", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("SHA-256", ExpectCorrupt(good.Replace(Hash, "../" + Hash[3..], StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("not a backup manifest", ExpectCorrupt(good.Replace("\"sizeBytes\":10489856", "\"sizeBytes\":1e999", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
        Assert.Contains("not a backup manifest", ExpectCorrupt(new string('[', 10_000)).Message, StringComparison.Ordinal);
        Assert.Contains("missing", ExpectCorrupt(good.Replace("\"blocks\":[", "\"blockz\":[", StringComparison.Ordinal)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Targets_parse_bucket_and_prefix_and_refuse_anything_else()
    {
        Assert.Equal(new BackupTarget("backups", ""), BackupTarget.Parse("s3://backups"));
        Assert.Equal(new BackupTarget("backups", "a/b/"), BackupTarget.Parse("s3://backups/a/b/"));
        Assert.Equal("a/b/blocks/" + Hash, BackupTarget.Parse("s3://backups/a/b").BlockKey(Hash));
        Assert.Equal("a/b/backups/bk-1.json", BackupTarget.Parse("s3://backups/a/b").ManifestKey("bk-1"));
        Assert.Equal("s3://backups/a/b", BackupTarget.Parse("s3://backups/a/b").ToString());
        foreach (var bad in new[] { "", "backups", "http://backups", "s3://", "s3://B", "s3://ab", "s3://bad_bucket", "s3://-bucket", "s3://a..b", "s3://bucket/../x", "s3://bucket/a b", "S3://bucket" })
        {
            var e = Assert.Throws<BackupException>(() => BackupTarget.Parse(bad));
            Assert.Equal(BackupErrorKind.InvalidArgument, e.Kind);
        }
        Assert.Throws<BackupException>(() => BackupTarget.CheckBackupId("../x"));
        Assert.Throws<BackupException>(() => BackupTarget.CheckBackupId(""));
        BackupTarget.CheckBackupId(BackupTarget.NewBackupId(DateTimeOffset.UtcNow));
        Assert.Matches("^bk-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$", BackupTarget.NewBackupId(DateTimeOffset.UtcNow));
    }
}
