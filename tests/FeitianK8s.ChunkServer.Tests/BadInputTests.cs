using System.Net.Sockets;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>Malformed and hostile requests get clear errors, change nothing and leave the server serving.</summary>
public sealed class BadInputTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int FourMiB = 4 << 20;
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private readonly byte[] _stored = RandomBytes(10_000, 42);
    private ChunkServerUnderTest _server = null!;

    public async Task InitializeAsync()
    {
        _server = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("data")));
        await _server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        await _server.AppendAsync(1, 1, 0, _stored);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    private async Task AssertUnchangedAsync()
    {
        var info = await _server.InfoAsync(1);
        Assert.Equal((10_000ul, false, 1ul), (info.Length, info.Sealed, info.Epoch));
        Assert.Equal(_stored, await _server.ReadAllAsync(1));
        Assert.Equal([1ul], _server.Host.Store.Inventory().Select(c => c.Id));
    }

    [Fact]
    public async Task Unknown_chunk_ids_are_not_found_in_every_call()
    {
        var client = _server.Client;
        const ulong unknown = 0xDEADBEEF;
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _server.AppendAsync(unknown, 1, 0, [1]));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, async () => await client.ReadAsync(new ReadRequest { ChunkId = unknown, Length = 1 }));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, async () => await client.SyncAsync(new SyncRequest { ChunkId = unknown }));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, async () => await client.SealAsync(new SealRequest { ChunkId = unknown, Epoch = 1 }));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, async () => await client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = unknown }));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _server.InfoAsync(unknown));
        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _server.InfoAsync(ulong.MaxValue));
        await AssertUnchangedAsync();
    }

    [Fact]
    public async Task Huge_offsets_and_lengths_are_refused()
    {
        var client = _server.Client;
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.InvalidArgument,
            async () => await client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = ulong.MaxValue, Length = 10 }));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.InvalidArgument,
            async () => await client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = 10_001, Length = 10 }));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.TooLarge,
            async () => await client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = 0, Length = uint.MaxValue }));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.TooLarge,
            async () => await client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = 0, Length = FourMiB + 1 }));
        var clipped = await client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = 9_990, Length = FourMiB });
        Assert.Equal(_stored[9_990..], clipped.Data.ToByteArray());

        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.WrongOffset, () => _server.AppendAsync(1, 1, ulong.MaxValue - 1, [1]));
        await FailsAsync(StatusCode.OutOfRange, ErrorReasons.InvalidArgument,
            async () => await client.SealAsync(new SealRequest { ChunkId = 1, Epoch = 1, Length = ulong.MaxValue }));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument,
            async () => await client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1, MaxLength = ulong.MaxValue }));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => _server.AppendAsync(1, 0, 10_000, [1]));
        await AssertUnchangedAsync();
    }

    [Fact]
    public async Task Oversize_and_empty_appends_are_refused()
    {
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.TooLarge, () => _server.AppendAsync(1, 1, 10_000, new byte[FourMiB + 1]));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => _server.AppendAsync(1, 1, 10_000, []));
        // Past the gRPC message limit the transport itself refuses it.
        var huge = await Assert.ThrowsAsync<RpcException>(() => _server.AppendAsync(1, 1, 10_000, new byte[9 << 20]));
        Assert.Equal(StatusCode.ResourceExhausted, huge.StatusCode);
        await AssertUnchangedAsync();

        // Exactly 4 MiB is accepted.
        var max = RandomBytes(FourMiB, 43);
        Assert.Equal(10_000ul + FourMiB, (await _server.AppendAsync(1, 1, 10_000, max)).Length);
        var back = await _server.Client.ReadAsync(new ReadRequest { ChunkId = 1, Offset = 10_000, Length = FourMiB });
        Assert.Equal(max, back.Data.ToByteArray());
    }

    [Fact]
    public async Task Random_bytes_on_both_ports_leave_the_server_running_and_correct()
    {
        var random = new Random(44);
        foreach (var address in new[] { _server.Host.GrpcAddress, _server.Host.HttpAddress })
        {
            var uri = new Uri(address);
            for (var round = 0; round < 5; round++)
            {
                var garbage = new byte[1 + random.Next(200_000)];
                random.NextBytes(garbage);
                if (round == 1)
                {
                    // A valid HTTP/2 preface followed by junk frames.
                    var preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
                    preface.CopyTo(garbage, 0);
                }
                await SendAndDrainAsync(uri.Port, garbage);
            }
        }

        // One connection that sent half a request and stays open does not block anyone.
        using var idle = new TcpClient();
        await idle.ConnectAsync("127.0.0.1", new Uri(_server.Host.GrpcAddress).Port);
        await idle.GetStream().WriteAsync("PRI * HTTP/2.0\r\n"u8.ToArray());

        await AssertUnchangedAsync();
        await _server.AppendAsync(1, 1, 10_000, [7, 7, 7]);
        using var http = new HttpClient();
        var health = await http.GetAsync(_server.Host.HttpAddress + "/healthz");
        Assert.True(health.IsSuccessStatusCode);
    }

    private async Task SendAndDrainAsync(int port, byte[] garbage)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port);
        var stream = tcp.GetStream();
        try
        {
            await stream.WriteAsync(garbage);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var buffer = new byte[4096];
            while (await stream.ReadAsync(buffer, timeout.Token) > 0)
            {
            }
        }
        catch (Exception error) when (error is IOException or SocketException or OperationCanceledException)
        {
            // The server closing or resetting the connection is the expected outcome.
            output.WriteLine($"port {port}: {error.GetType().Name}");
        }
    }
}
