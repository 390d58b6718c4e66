using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Common;
using System.Diagnostics;
using System.Text.Json;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Proto.ChunkServer;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>/metrics and /healthz, and the executable: flags, endpoints.json, start-up failure, SIGTERM.</summary>
public sealed class ObservabilityAndProcessTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Metrics_and_health_answer_per_server()
    {
        await using var one = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("one")));
        await using var two = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("two")));
        await one.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        await one.AppendAsync(1, 1, 0, RandomBytes(1234, 1));
        await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => one.InfoAsync(2));

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(one.Host.HttpAddress + "/metrics");
        Assert.Contains("feitian_chunkserver_requests_total{method=\"Append\",reason=\"ok\"} 1", metrics);
        Assert.Contains("feitian_chunkserver_requests_total{method=\"GetChunkInfo\",reason=\"not-found\"} 1", metrics);
        Assert.Contains("feitian_chunkserver_appended_bytes_total 1234", metrics);
        Assert.Contains("feitian_chunkserver_chunks_count 1", metrics);
        Assert.Contains("feitian_chunkserver_request_duration_seconds_bucket", metrics);

        var otherMetrics = await http.GetStringAsync(two.Host.HttpAddress + "/metrics");
        Assert.Contains("feitian_chunkserver_appended_bytes_total 0", otherMetrics);
        Assert.Contains("feitian_chunkserver_chunks_count 0", otherMetrics);

        using var health = JsonDocument.Parse(await http.GetStringAsync(one.Host.HttpAddress + "/healthz"));
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
        Assert.Equal(one.Host.Id, health.RootElement.GetProperty("id").GetString());
    }

    [Fact]
    public async Task The_same_data_dir_cannot_be_served_twice()
    {
        var dir = _dir.Sub("shared");
        await using var first = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(dir));
        var error = await Assert.ThrowsAsync<IOException>(() => ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(dir)));
        Assert.Contains("in use", error.Message);
    }

    [Fact]
    public async Task Executable_writes_endpoints_serves_and_exits_zero_on_sigterm()
    {
        var data = _dir.Sub("proc-a");
        await using var master = await RecordingMasterDouble.StartAsync(_loggers);
        using var process = StartExecutable($"--data {data},{_dir.Sub("proc-b")} --master {master.Address} --node n1 --rack r1 --chunk-size 1MiB --block-size 4KiB");
        var endpointsPath = Path.Combine(data, ServerEndpoints.FileName);
        await Eventually.HoldsAsync(() => File.Exists(endpointsPath) || process.HasExited, "endpoints.json");
        Assert.False(process.HasExited);
        var endpoints = (ServerEndpoints.TryRead(data) ?? throw new InvalidDataException("endpoints.json unreadable"));
        output.WriteLine($"endpoints: {endpoints}");
        Assert.StartsWith("http://127.0.0.1:", endpoints.Grpc);
        Assert.StartsWith("http://127.0.0.1:", endpoints.Http);

        using (var channel = Grpc.Net.Client.GrpcChannel.ForAddress(endpoints.Grpc))
        {
            var client = new Proto.ChunkServer.ChunkServer.ChunkServerClient(channel);
            await client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
            await FailsAsync(Grpc.Core.StatusCode.OutOfRange, Core.Common.ErrorReasons.ChunkFull, async () => await client.AppendAsync(new AppendRequest
            {
                ChunkId = 1, Epoch = 1, Data = Google.Protobuf.ByteString.CopyFrom(new byte[(1 << 20) + 1]),
                Crc32C = Core.Common.Crc32C.Compute(new byte[(1 << 20) + 1]),
            }));
        }
        await Eventually.HoldsAsync(() => master.Registrations.Any(r => r.Identity.Id == endpoints.Id && r.Identity.Node == "n1"), "registration");

        Kill(process.Id, "TERM");
        Assert.True(process.WaitForExit(30_000), "the server did not stop within 30 s of SIGTERM");
        Assert.Equal(0, process.ExitCode);
    }

    [Fact]
    public void Executable_exits_non_zero_with_the_reason_on_bad_flags_and_start_up_failure()
    {
        using (var missing = StartExecutable("--data /tmp/x"))
        {
            Assert.True(missing.WaitForExit(30_000));
            Assert.NotEqual(0, missing.ExitCode);
            Assert.Contains("--master is required", missing.StandardError.ReadToEnd());
        }
        using (var badRebuild = StartExecutable($"--data {_dir.Sub("bad-rebuild")} --master http://127.0.0.1:1 --node n --rack r --rebuild-concurrency 0"))
        {
            Assert.True(badRebuild.WaitForExit(30_000));
            Assert.Equal(2, badRebuild.ExitCode);
            Assert.Contains("--rebuild-concurrency '0' must be a whole number from 1 to 1024", badRebuild.StandardError.ReadToEnd());
        }
        using (var badBandwidth = StartExecutable($"--data {_dir.Sub("bad-bandwidth")} --master http://127.0.0.1:1 --node n --rack r --rebuild-bandwidth 10X"))
        {
            Assert.True(badBandwidth.WaitForExit(30_000));
            Assert.Equal(2, badBandwidth.ExitCode);
            Assert.Contains("--rebuild-bandwidth '10X' is not bytes per second", badBandwidth.StandardError.ReadToEnd());
        }
        var file = Path.Combine(_dir.Path, "not-a-dir");
        File.WriteAllText(file, "x");
        using var failing = StartExecutable($"--data {file} --master http://127.0.0.1:1 --node n --rack r");
        Assert.True(failing.WaitForExit(30_000));
        Assert.NotEqual(0, failing.ExitCode);
        Assert.Contains("failed to start", failing.StandardError.ReadToEnd());
    }

    [Fact]
    public void Sizes_accept_unit_suffixes()
    {
        Assert.Equal(4096, ByteSize.Parse("4KiB"));
        Assert.Equal(64L << 20, ByteSize.Parse("64MiB"));
        Assert.Equal(3L << 30, ByteSize.Parse("3GiB"));
        Assert.Equal(100, ByteSize.Parse("100B"));
        Assert.Equal(12345, ByteSize.Parse("12345"));
        Assert.Throws<FormatException>(() => ByteSize.Parse("-1MiB"));
        Assert.Throws<FormatException>(() => ByteSize.Parse("lots"));
        Assert.Throws<FormatException>(() => ByteSize.Parse("99999999999GiB"));
    }

    [Fact]
    public async Task Kill_9_during_an_append_stream_keeps_every_acknowledged_byte()
    {
        var data = _dir.Sub("crash");
        var acknowledged = new MemoryStream();
        using (var process = StartExecutable($"--data {data} --master http://127.0.0.1:1 --node n1 --rack r1 --chunk-size 64MiB"))
        {
            var endpointsPath = Path.Combine(data, ServerEndpoints.FileName);
            await Eventually.HoldsAsync(() => File.Exists(endpointsPath) || process.HasExited, "endpoints.json");
            var endpoints = (ServerEndpoints.TryRead(data) ?? throw new InvalidDataException("endpoints.json unreadable"));
            using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(endpoints.Grpc);
            var client = new Proto.ChunkServer.ChunkServer.ChunkServerClient(channel);
            await client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 9, Epoch = 1 });

            var random = new Random(5);
            long acknowledgedBytes = 0;
            var killer = Task.Run(async () =>
            {
                // Kill in the middle of the stream: once a few MiB were acknowledged.
                await Eventually.HoldsAsync(() => Interlocked.Read(ref acknowledgedBytes) > 3 << 20, "3 MiB acknowledged", timeoutSeconds: 120);
                await Task.Delay(100);
                process.Kill();
            });
            try
            {
                while (true)
                {
                    var piece = RandomBytes(1 + random.Next(300_000), random.Next());
                    await client.AppendAsync(new AppendRequest
                    {
                        ChunkId = 9, Epoch = 1, ExpectedOffset = (ulong)acknowledged.Length,
                        Data = Google.Protobuf.ByteString.CopyFrom(piece), Crc32C = Core.Common.Crc32C.Compute(piece),
                    });
                    acknowledged.Write(piece);
                    Interlocked.Exchange(ref acknowledgedBytes, acknowledged.Length);
                }
            }
            catch (Grpc.Core.RpcException error)
            {
                output.WriteLine($"append stream ended after {acknowledged.Length} acknowledged bytes: {error.StatusCode}");
            }
            await killer;
            Assert.True(process.WaitForExit(30_000));
        }
        Assert.True(acknowledged.Length > 0);

        await using var restarted = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(data));
        var length = (await restarted.InfoAsync(9)).Length;
        Assert.True(length >= (ulong)acknowledged.Length, $"chunk length {length} after restart is below the acknowledged {acknowledged.Length}");
        var stored = await restarted.ReadAllAsync(9);
        Assert.Equal(acknowledged.ToArray(), stored[..(int)acknowledged.Length]);
    }

    private static Process StartExecutable(string arguments)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "FeitianK8s.ChunkServer.dll");
        var info = new ProcessStartInfo("dotnet", $"{dll} {arguments}")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        return process;
    }

    private static void Kill(int pid, string signal)
    {
        using var kill = Process.Start("kill", $"-{signal} {pid}");
        kill.WaitForExit();
    }
}
