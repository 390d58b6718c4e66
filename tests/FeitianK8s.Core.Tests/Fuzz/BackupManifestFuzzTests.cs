using System.Text;
using CsCheck;
using FeitianK8s.Core.Backup;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Fuzz;

/// <summary>
/// Hostile backup manifests, as a store under someone else's control could hold: valid ones with one
/// field replaced by a wrong value (negative, huge, fractional, 1e999, wrong type, null, nested), fields
/// removed or repeated, absurd sizes, offsets and block lengths, bad hashes, truncations, byte flips and
/// raw garbage. <see cref="BackupManifest.Parse"/> either refuses with a <see cref="BackupErrorKind.Corrupt"/>
/// <see cref="BackupException"/> that names the object, or returns a manifest whose every block lies inside
/// the volume with a well-formed hash, and that round-trips. Any other exception fails the test.
/// Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class BackupManifestFuzzTests(ITestOutputHelper output)
{
    private const string Source = "s3://fuzz/backups/bk-fuzz.json";

    private static readonly Gen<string> Hashes = Gen.Frequency(
        (6, Gen.Byte.Array[32].Select(Convert.ToHexStringLower)),
        (1, Gen.Byte.Array[32].Select(Convert.ToHexString)),
        (1, Gen.String[Gen.Char["0123456789abcdefg./"], 0, 70]));

    private static readonly Gen<long> Numbers = Gen.Frequency(
        (4, Gen.Long[0, 1L << 32]),
        (1, Gen.Long),
        (1, Gen.OneOf(0L, -1L, 4095L, 4096L, 1L << 20, (1L << 50) + 4096, long.MaxValue, long.MinValue, int.MaxValue + 1L)));

    /// <summary>A manifest that is valid or close to it: sizes and block sizes near the rules' edges.</summary>
    private static readonly Gen<string> Plausible =
        Gen.Select(Gen.OneOf(4096, 1 << 20, 1 << 16, 3000, 0, 1 << 27), Gen.Long[1, 64], Gen.Int[0, 4095], Gen.Select(Gen.Frequency((6, Gen.Long[0, 15]), (1, Gen.Long[-2, 70])), Hashes, (i, h) => (i, h)).Array[0, 12],
            Gen.OneOf("data", "", "a\u0001b", "[red]x[/]", new string('v', 300)), Numbers, (blockSize, blocks, tail, entries, volume, uploaded) =>
        {
            var size = (blocks * Math.Max(blockSize, 1)) - (tail % 2 == 0 ? 0 : tail);
            var blockJson = string.Join(",", entries.Select(e => $"{{\"index\":{e.Item1},\"sha256\":\"{e.Item2}\"}}"));
            return $"{{\"format\":\"feitian-backup/1\",\"id\":\"bk-20260101-000000-abcdef\",\"volume\":\"{Escape(volume)}\",\"snapshot\":\"s1\"," +
                   $"\"snapshotCreatedAt\":\"2026-01-01T00:00:00+00:00\",\"sizeBytes\":{size},\"blockSize\":{blockSize},\"uploadedBytes\":{Math.Abs(uploaded % Math.Max(size + 1, 1))}," +
                   $"\"createdAt\":\"2026-01-01T00:00:01+00:00\",\"blocks\":[{blockJson}]}}";
        });

    private static readonly string[] Fields = ["format", "id", "volume", "snapshot", "snapshotCreatedAt", "sizeBytes", "blockSize", "uploadedBytes", "createdAt", "blocks", "index", "sha256"];

    private static readonly Gen<string> HostileValues = Gen.Frequency(
        (1, Numbers.Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture))),
        (2, Gen.OneOf("-1", "1e999", "-0", "0.5", "1E3", "18446744073709551616", "99999999999999999999999999", "NaN", "null", "true", "\"\"", "\"x\"", "[]", "{}",
            "[[[[[[[[[[[[]]]]]]]]]]]]", "\"2026-13-45T99:99:99Z\"", "\"\\u0000\"", "{\"index\":1}", "[null]", "[{\"index\":null,\"sha256\":null}]")));

    private abstract record Mutation
    {
        public abstract byte[] Apply(string manifest);
    }

    private sealed record Replace(string Field, string Value) : Mutation
    {
        public override byte[] Apply(string manifest)
        {
            var at = manifest.IndexOf($"\"{Field}\":", StringComparison.Ordinal);
            if (at < 0)
            {
                return Encoding.UTF8.GetBytes(manifest);
            }
            var start = at + Field.Length + 3;
            var end = ValueEnd(manifest, start);
            return Encoding.UTF8.GetBytes(manifest[..start] + Value + manifest[end..]);
        }
    }

    private sealed record Remove(string Field) : Mutation
    {
        public override byte[] Apply(string manifest) => Encoding.UTF8.GetBytes(manifest.Replace($"\"{Field}\":", $"\"x{Field}\":", StringComparison.Ordinal));
    }

    private sealed record Repeat(string Field, string Value) : Mutation
    {
        public override byte[] Apply(string manifest) => Encoding.UTF8.GetBytes($"{{\"{Field}\":{Value}," + (manifest.Length > 0 ? manifest[1..] : "}"));
    }

    private sealed record Truncate(int Keep) : Mutation
    {
        public override byte[] Apply(string manifest) => Encoding.UTF8.GetBytes(manifest)[..Math.Min(Keep, Encoding.UTF8.GetByteCount(manifest))];
    }

    private sealed record Flip(int At, byte Value) : Mutation
    {
        public override byte[] Apply(string manifest)
        {
            var bytes = Encoding.UTF8.GetBytes(manifest);
            if (bytes.Length > 0)
            {
                bytes[At % bytes.Length] = Value;
            }
            return bytes;
        }
    }

    private sealed record Garbage(byte[] Bytes) : Mutation
    {
        public override byte[] Apply(string manifest) => Bytes;
    }

    private sealed record Keep : Mutation
    {
        public override byte[] Apply(string manifest) => Encoding.UTF8.GetBytes(manifest);
    }

    private static readonly Gen<Mutation> Mutations = Gen.Frequency(
        (3, Gen.Select(Gen.OneOf(Fields), HostileValues, Mutation (f, v) => new Replace(f, v))),
        (1, Gen.OneOf(Fields).Select(Mutation (f) => new Remove(f))),
        (1, Gen.Select(Gen.OneOf(Fields), HostileValues, Mutation (f, v) => new Repeat(f, v))),
        (1, Gen.Int[0, 600].Select(Mutation (n) => new Truncate(n))),
        (1, Gen.Select(Gen.Int[0, 10_000], Gen.Byte, Mutation (at, b) => new Flip(at, b))),
        (1, Gen.Byte.Array[0, 300].Select(Mutation (b) => new Garbage(b))),
        (2, Gen.Const<Mutation>(new Keep())));

    private static string Escape(string text) => System.Text.Json.JsonEncodedText.Encode(text, System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping).ToString();

    /// <summary>End of the JSON value starting at <paramref name="start"/> (a string, a bracketed value or a bare token).</summary>
    private static int ValueEnd(string text, int start)
    {
        var depth = 0;
        var inString = false;
        for (var i = start; i < text.Length; i++)
        {
            var c = text[i];
            if (inString)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    inString = false;
                    if (depth == 0)
                    {
                        return i + 1;
                    }
                }
                continue;
            }
            switch (c)
            {
                case '"':
                    inString = true;
                    break;
                case '[' or '{':
                    depth++;
                    break;
                case ']' or '}':
                    if (depth == 0)
                    {
                        return i;
                    }
                    depth--;
                    if (depth == 0)
                    {
                        return i + 1;
                    }
                    break;
                case ',' when depth == 0:
                    return i;
            }
        }
        return text.Length;
    }

    [Fact]
    public void Hostile_manifests_are_refused_with_a_corrupt_error_or_parse_into_a_manifest_that_keeps_every_rule()
    {
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        Gen.Select(Plausible, Mutations.Array[0, 2], (manifest, mutations) => (manifest, mutations)).Sample(sample =>
        {
            var (manifest, mutations) = sample;
            var bytes = Encoding.UTF8.GetBytes(manifest);
            foreach (var m in mutations)
            {
                bytes = m.Apply(Encoding.UTF8.GetString(bytes));
            }
            BackupManifest parsed;
            try
            {
                parsed = BackupManifest.Parse(bytes, Source);
            }
            catch (BackupException e)
            {
                Assert.Equal(BackupErrorKind.Corrupt, e.Kind);
                Assert.StartsWith($"backup manifest {Source}: ", e.Message, StringComparison.Ordinal);
                var reason = e.Message[(Source.Length + 18)..];
                var key = reason.StartsWith("not a backup manifest", StringComparison.Ordinal) ? "json" : reason.Split(' ')[0];
                outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
                return;
            }
            outcomes["parsed"] = outcomes.GetValueOrDefault("parsed") + 1;
            Assert.InRange(parsed.SizeBytes, 1, BackupManifest.MaxSizeBytes);
            Assert.Equal(0, parsed.SizeBytes % BackupManifest.SectorSize);
            Assert.InRange(parsed.BlockSize, BackupManifest.MinBlockSize, BackupManifest.MaxBlockSize);
            Assert.Equal(0, parsed.BlockSize & (parsed.BlockSize - 1));
            Assert.InRange(parsed.UploadedBytes, 0, parsed.SizeBytes);
            Assert.True(BackupTarget.IsBackupId(parsed.Id));
            Assert.Equal(parsed.Blocks.Count, parsed.Blocks.Select(b => b.Index).Distinct().Count());
            Assert.All(parsed.Blocks, b =>
            {
                Assert.InRange(b.Index, 0, parsed.BlockCount - 1);
                Assert.True(b.Index * parsed.BlockSize < parsed.SizeBytes, "a block starts inside the volume");
                Assert.True(BackupManifest.IsSha256(b.Sha256));
            });
            Assert.False(parsed.Volume.Any(char.IsControl), "no control characters in the volume name");
            var again = BackupManifest.Parse(parsed.Serialize(), "round trip");
            Assert.Equal(parsed with { Blocks = [] }, again with { Blocks = [] });
            Assert.Equal(parsed.Blocks, again.Blocks);
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 1, writeLine: output.WriteLine);

        output.WriteLine($"outcomes: {string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} {o.Value}"))}");
        Assert.True(outcomes.GetValueOrDefault("parsed") > 0, "the fuzzer reached manifests that parse");
        Assert.True(outcomes.Count >= 6, "the fuzzer reached several kinds of refusal");
    }
}
