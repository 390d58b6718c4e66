using System.Diagnostics;
using System.Text.Json;
using FeitianK8s.Master.Hosting;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;

namespace FeitianK8s.Master.Tests;

/// <summary>Runs the real master executable as a child process.</summary>
public sealed class ProgramTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Process Start(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "FeitianK8s.Master.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        return Process.Start(info)!;
    }

    [Fact]
    public async Task WritesEndpointsServesAndStopsOnSigterm()
    {
        using var process = Start("--data", _dir.Path, "--chunk-size", "1MiB", "--replicas", "1", "--heartbeat-timeout", "2s");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var endpoints = Path.Combine(_dir.Path, FeitianK8s.Core.Cluster.ServerEndpoints.FileName);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(endpoints) && DateTime.UtcNow < deadline && !process.HasExited)
        {
            await Task.Delay(100);
        }
        Assert.True(File.Exists(endpoints), "endpoints.json was not written");
        var json = JsonDocument.Parse(await File.ReadAllTextAsync(endpoints)).RootElement;
        var grpc = json.GetProperty("grpc").GetString()!;
        var http = json.GetProperty("http").GetString()!;
        Assert.StartsWith("http://127.0.0.1:", grpc);

        using (var channel = GrpcChannel.ForAddress(grpc))
        {
            var client = new Proto.Master.Master.MasterClient(channel);
            var file = await client.CreateFileAsync(new CreateFileRequest { Path = "/p" });
            Assert.Equal(1u, file.Replicas);
        }
        using (var httpClient = new HttpClient())
        {
            Assert.Equal("ok\n", await httpClient.GetStringAsync(http + "/healthz"));
        }

        Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).WaitForExit();
        using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(exit.Token);
        output.WriteLine(await stdout);
        output.WriteLine(await stderr);
        Assert.Equal(0, process.ExitCode);
        Assert.Contains(grpc, await stdout);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(_dir.Path, "wal"), "*", SearchOption.AllDirectories));
    }

    /// <summary>
    /// Every case passes a valid --data, so the option under test is the first thing the parser
    /// rejects; the exit code 2 and the exact reason prove it was that option, not a missing --data.
    /// </summary>
    [Theory]
    [InlineData("--port", "abc", "error: --port 'abc' is not a number")]
    [InlineData("--port", "70000", "error: ports must be between 0 and 65535")]
    [InlineData("--chunk-size", "lots", "error: size 'lots' is not a positive size such as 64MiB")]
    [InlineData("--replicas", "9", "error: replicas must be between 1 and 5")]
    [InlineData("--bogus", "x", "error: unknown option --bogus")]
    public async Task BadArgumentsExitNonZeroWithTheReason(string option, string value, string reason)
    {
        using var process = Start("--data", _dir.Path, option, value);
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine(stderr);
        Assert.Equal(2, process.ExitCode);
        Assert.Equal(reason, stderr.Split('\n')[0].TrimEnd('\r'));
        Assert.Contains(CommandLine.Usage, stderr);
        Assert.False(File.Exists(Path.Combine(_dir.Path, FeitianK8s.Core.Cluster.ServerEndpoints.FileName)), "a rejected command line must not start a master");
    }

    [Fact]
    public async Task AMissingDataDirectoryIsTheReasonWhenOnlyThePortIsGiven()
    {
        using var process = Start("--port", "1");
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine(stderr);
        Assert.Equal(2, process.ExitCode);
        Assert.Equal("error: --data DIR is required", stderr.Split('\n')[0].TrimEnd('\r'));
    }

    [Fact]
    public async Task UnusableDataDirectoryExitsNonZero()
    {
        var file = Path.Combine(_dir.Path, "not-a-dir");
        await File.WriteAllTextAsync(file, "x");
        using var process = Start("--data", file);
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine(stderr);
        Assert.Equal(1, process.ExitCode);
        Assert.Contains("failed to start", stderr);
    }

    [Fact]
    public async Task PortInUseExitsNonZero()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        using var process = Start("--data", _dir.Path, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        output.WriteLine(stderr);
        Assert.Equal(1, process.ExitCode);
        Assert.Contains("failed to start", stderr);
        Assert.False(File.Exists(Path.Combine(_dir.Path, FeitianK8s.Core.Cluster.ServerEndpoints.FileName)));
    }

    [Fact]
    public async Task ASecondMasterOnTheSameDataDirectoryIsRefused()
    {
        await using var first = await RunningMaster.StartAsync(_dir.Path, output);
        var error = await Assert.ThrowsAsync<IOException>(() => RunningMaster.StartAsync(_dir.Path, output));
        Assert.Contains("in use", error.Message);
        await first.Client.GetClusterStatusAsync(new GetClusterStatusRequest());
    }

    [Fact]
    public void SizesAndDurationsParse()
    {
        Assert.Equal(64UL << 20, CommandLine.ParseSize("64MiB"));
        Assert.Equal(4096UL, CommandLine.ParseSize("4096"));
        Assert.Equal(1UL << 30, CommandLine.ParseSize("1G"));
        Assert.Equal(TimeSpan.FromSeconds(5), CommandLine.ParseDuration("5s"));
        Assert.Equal(TimeSpan.FromMilliseconds(500), CommandLine.ParseDuration("500ms"));
        Assert.Throws<ArgumentException>(() => CommandLine.ParseSize("0"));
        Assert.Throws<ArgumentException>(() => CommandLine.ParseDuration("forever"));
    }
}
