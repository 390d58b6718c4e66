using FeitianK8s.Core.Backup;
using FeitianK8s.Core.Views;

namespace FeitianK8s.Core.Tests.Backup;

/// <summary>
/// `feitian backup ls --json` is a contract ({"backups":[{"id","volume","snapshot","sizeBytes","uploadedBytes","createdAt"}]}):
/// the shared builder, which the console's /api/backups also uses, prints exactly the bytes the CLI printed before it moved here.
/// </summary>
public sealed class BackupViewJsonTests
{
    [Fact]
    public void Backup_list_json_keeps_the_cli_contract_byte_for_byte()
    {
        var manifest = new BackupManifest("bk-20260101-120000-abcdef", "vol-a", "snap-a", new DateTimeOffset(2026, 1, 1, 11, 0, 0, TimeSpan.Zero),
            8 << 20, BackupUploader.DefaultBlockSize, 4 << 20, new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero), []);
        var json = StatusJson.Serialize(BackupListView.Of([manifest]));
        // What the CLI printed as `new { backups = views }` before the view moved into core/Views.
        var before = StatusJson.Serialize(new { backups = new[] { new { id = manifest.Id, volume = "vol-a", snapshot = "snap-a", sizeBytes = 8L << 20, uploadedBytes = 4L << 20, createdAt = manifest.CreatedAt } } });
        Assert.Equal(before, json);
        Assert.Equal("""
            {
              "backups": [
                {
                  "id": "bk-20260101-120000-abcdef",
                  "volume": "vol-a",
                  "snapshot": "snap-a",
                  "sizeBytes": 8388608,
                  "uploadedBytes": 4194304,
                  "createdAt": "2026-01-01T12:00:00+00:00"
                }
              ]
            }
            """.ReplaceLineEndings("\n"), json.ReplaceLineEndings("\n"));
        Assert.Equal("""{"backups":[]}""", StatusJson.Serialize(BackupListView.Of([])).Replace(" ", "").Replace("\n", "").Replace("\r", ""));
    }
}
