using System.Text.Json;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// What people read from the CLI on a real cluster: `feitian status` fits an 80-column terminal
/// (every table row on one line, sizes in binary units, addresses only with --wide) while
/// --json keeps its fields; `fs put`, `fs get` and the other long commands (`up` start-up,
/// snapshot create, clones, volume rm) report progress as plain lines when their output is not a terminal.
/// </summary>
public sealed class CliOutputTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Status_fits_80_columns_json_keeps_its_fields_and_copies_report_plain_progress()
    {
        using var data = new TempDirectory("cli-output");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--masters", "3"]);
        var json = JsonDocument.Parse(await up.RunCliCheckedAsync("status", "--json")).RootElement;
        // The --json contract: exactly these fields.
        Assert.Equal(["badReplicas", "chunkServers", "degradedChunks", "eta", "healthy", "masters", "rebuild", "underReplicatedChunks"],
            json.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToList());
        Assert.Equal(["address", "alive", "capacityBytes", "chunks", "dead", "id", "node", "rack", "scrub", "usedBytes"],
            json.GetProperty("chunkServers")[0].EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToList());
        Assert.Equal(["address", "appliedIndex", "commitIndex", "lag", "role", "term"],
            json.GetProperty("masters")[0].EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToList());

        // Not a terminal: Spectre renders for 80 columns, as in an 80-column terminal.
        var text = await up.RunCliCheckedAsync("status");
        var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.All(lines, line => Assert.True(line.Length <= 80, $"{line.Length} columns: {line}"));
        foreach (var server in json.GetProperty("chunkServers").EnumerateArray())
        {
            var id = server.GetProperty("id").GetString()!;
            var row = Assert.Single(lines, l => l.Contains(id[..10], StringComparison.Ordinal));
            // One row, not wrapped: node, rack, state and sizes in binary units on the same line.
            Assert.Contains(server.GetProperty("node").GetString()!, row);
            Assert.Contains(server.GetProperty("rack").GetString()!, row);
            Assert.Contains(" up ", row);
            Assert.Matches(@"\d+(\.\d+)? (B|KiB|MiB|GiB|TiB) ", row);
            Assert.DoesNotContain(server.GetProperty("address").GetString()!, text);
        }
        Assert.DoesNotContain("http://", text);
        var wide = await up.RunCliCheckedAsync("status", "--wide");
        Assert.Contains(json.GetProperty("chunkServers")[0].GetProperty("address").GetString()!, wide);
        Assert.Contains(json.GetProperty("chunkServers")[0].GetProperty("id").GetString()!, wide);

        var local = Path.Combine(data.Path, "payload.bin");
        var payload = TestData.Random(10 << 20, seed: 4);
        await File.WriteAllBytesAsync(local, payload);
        var put = await up.RunCliAsync("fs", "put", local, "/progress/payload.bin");
        Assert.True(put.Succeeded, put.StandardError);
        Assert.Contains("put /progress/payload.bin: 10 MiB in ", put.StandardError);
        Assert.DoesNotContain("\u001b[", put.StandardError);
        var back = Path.Combine(data.Path, "back.bin");
        var get = await up.RunCliAsync("fs", "get", "/progress/payload.bin", back);
        Assert.True(get.Succeeded, get.StandardError);
        Assert.Contains("get /progress/payload.bin: 10 MiB in ", get.StandardError);
        Assert.Equal(payload, await File.ReadAllBytesAsync(back));
    }

    [Fact]
    public async Task Long_commands_report_plain_progress_lines_when_not_a_terminal_and_errors_stay_one_line()
    {
        using var data = new TempDirectory("cli-progress");
        await using var up = await FeitianUpProcess.StartAsync(output, data.Path, ["--chunkservers", "3"]);
        // `up` start-up: its stages, on standard error (standard output carries the addresses; the two pipes are read apart).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!up.StandardErrorLines.Any(l => l.StartsWith("up: waiting for", StringComparison.Ordinal)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }
        Assert.Contains(up.StandardErrorLines, l => l.StartsWith("up: starting 1 master(s) and 3 chunk server(s): done in ", StringComparison.Ordinal));
        Assert.Contains(up.StandardErrorLines, l => l.StartsWith("up: waiting for 3 chunk server(s) to report: done in ", StringComparison.Ordinal));

        await up.RunCliCheckedAsync("volume", "create", "origin", "--size", "8MiB");
        var steps = new (string[] Command, string Line)[]
        {
            (["snapshot", "create", "origin", "--name", "first"], "snapshot first of origin: done in "),
            (["volume", "create", "from-snap", "--from-snapshot", "first"], "volume from-snap from snapshot first: done in "),
            (["volume", "create", "from-vol", "--from-volume", "origin"], "volume from-vol from volume origin: done in "),
            (["volume", "rm", "from-vol"], "delete volume from-vol: done in "),
        };
        foreach (var (command, line) in steps)
        {
            var result = await up.RunCliAsync(command);
            Assert.True(result.Succeeded, result.StandardError);
            Assert.Contains(result.StandardError.Split('\n'), l => l.StartsWith(line, StringComparison.Ordinal) && l.TrimEnd().EndsWith(" s", StringComparison.Ordinal));
            Assert.DoesNotContain("\u001b[", result.StandardError);
            // The result itself stays on standard output.
            Assert.NotEmpty(result.StandardOutput.Trim());
        }

        // A refused long command: only its one-line error, no progress line.
        var refused = await up.RunCliAsync("volume", "rm", "no-such-volume");
        Assert.False(refused.Succeeded);
        Assert.DoesNotContain('\n', refused.StandardError.Trim());
        Assert.DoesNotContain("done in", refused.StandardError);
    }
}
