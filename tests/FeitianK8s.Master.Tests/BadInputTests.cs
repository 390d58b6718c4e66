using System.Net.Sockets;
using FeitianK8s.Proto.Master;

namespace FeitianK8s.Master.Tests;

public sealed class BadInputTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDirectory _dir = new();
    private RunningMaster _master = null!;

    public async Task InitializeAsync() => _master = await RunningMaster.StartAsync(_dir.Path, output);

    public async Task DisposeAsync()
    {
        await _master.DisposeAsync();
        _dir.Dispose();
    }

    private static async Task SendRandomBytesAsync(string address, int seed)
    {
        var uri = new Uri(address);
        var random = new Random(seed);
        for (var round = 0; round < 5; round++)
        {
            using var socket = new TcpClient();
            await socket.ConnectAsync(uri.Host, uri.Port);
            var stream = socket.GetStream();
            var junk = new byte[random.Next(1, 64 * 1024)];
            random.NextBytes(junk);
            try
            {
                await stream.WriteAsync(junk);
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                var buffer = new byte[4096];
                while (await stream.ReadAsync(buffer, timeout.Token) > 0)
                {
                }
            }
            catch (Exception error) when (error is IOException or OperationCanceledException or SocketException)
            {
                // The server closing or resetting the connection is the expected answer.
            }
        }
    }

    [Fact]
    public async Task RandomBytesOnBothPortsLeaveTheMasterServing()
    {
        await _master.Client.CreateFileAsync(new CreateFileRequest { Path = "/before" });
        await SendRandomBytesAsync(_master.Host.GrpcAddress, 1);
        await SendRandomBytesAsync(_master.Host.HttpAddress, 2);

        Assert.Equal("/before", (await _master.Client.StatFileAsync(new StatFileRequest { Path = "/before" })).Path);
        await _master.Client.CreateFileAsync(new CreateFileRequest { Path = "/after" });
        using var http = new HttpClient();
        Assert.Equal("ok\n", await http.GetStringAsync(_master.Host.HttpAddress + "/healthz"));
        Assert.Equal(["/after", "/before"], (await _master.Client.ListFilesAsync(new ListFilesRequest { Recursive = true })).Entries.Select(e => e.Path));
    }

    [Fact]
    public async Task MetricsAreServedPerHost()
    {
        await _master.Client.CreateFileAsync(new CreateFileRequest { Path = "/x" });
        var dir2 = new TempDirectory();
        await using (var second = await RunningMaster.StartAsync(dir2.Path, output))
        {
            using var http = new HttpClient();
            var mine = await http.GetStringAsync(_master.Host.HttpAddress + "/metrics");
            var theirs = await http.GetStringAsync(second.Host.HttpAddress + "/metrics");
            Assert.Contains("feitian_master_files 1", mine);
            Assert.Contains("feitian_master_files 0", theirs);
            Assert.Contains("feitian_master_commands_total{kind=\"CreateFile\",result=\"ok\"} 1", mine);
            Assert.Contains("feitian_master_log_commit_seconds_count", mine);
        }
        dir2.Dispose();
    }

    [Fact]
    public async Task GrpcOnTheHttpPortAndHttpOnTheGrpcPortFailCleanly()
    {
        using var http = new HttpClient();
        // HTTP/1.1 on the HTTP/2-only gRPC port: Kestrel answers 400 Bad Request (not a 5xx), the server stays up.
        var wrongProtocol = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetStringAsync(_master.Host.GrpcAddress + "/healthz"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, wrongProtocol.StatusCode);
        using var wrong = Grpc.Net.Client.GrpcChannel.ForAddress(_master.Host.HttpAddress);
        var client = new Proto.Master.Master.MasterClient(wrong);
        await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await client.StatFileAsync(new StatFileRequest { Path = "/x" }));
        await _master.Client.GetClusterStatusAsync(new GetClusterStatusRequest());
    }
}
