using System.Net.Sockets;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using MasterGrpc = FeitianK8s.Proto.Master.Master;

namespace FeitianK8s.EndToEnd.Tests;

[Collection(SharedClusterCollection.Name)]
public sealed class BadInputTests : IDisposable
{
    private const int MiB = 1024 * 1024;
    private readonly SharedClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public BadInputTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    [Fact]
    public async Task Client_api_rejects_bad_arguments_with_clear_errors()
    {
        var client = _fixture.Cluster.CreateClient();
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => client.OpenForReadAsync("/bad/missing.bin"))).Kind);
        Assert.Equal(PanguErrorKind.NotFound, (await Assert.ThrowsAsync<PanguException>(() => client.DeleteAsync("/bad/missing.bin"))).Kind);
        Assert.Null(await client.StatAsync("/bad/missing.bin"));
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => client.CreateAsync(""))).Kind);
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => client.CreateAsync("/bad/x.bin", replicas: -1))).Kind);

        const string path = "/bad/small.bin";
        await client.CreateAsync(path);
        Assert.Equal(PanguErrorKind.AlreadyExists, (await Assert.ThrowsAsync<PanguException>(() => client.CreateAsync(path))).Kind);
        var data = TestData.Random(MiB + 5, 21);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await appender.AppendAsync(data);
            Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => appender.ReadAsync(-1, new byte[10]))).Kind);
            await appender.CloseAsync();
            await Assert.ThrowsAsync<InvalidOperationException>(() => appender.AppendAsync(new byte[1]));
        }

        await using var reader = await client.OpenForReadAsync(path);
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => reader.ReadAsync(-1, new byte[10]))).Kind);
        Assert.Equal(PanguErrorKind.InvalidArgument, (await Assert.ThrowsAsync<PanguException>(() => reader.ReadAsync(long.MinValue, new byte[10]))).Kind);
        Assert.Equal(0, await reader.ReadAsync(long.MaxValue / 2, new byte[10]));
        Assert.Equal(0, await reader.ReadAsync(data.Length, new byte[10]));
        var huge = new byte[32 * MiB];
        Assert.Equal(data.Length, await reader.ReadAsync(0, huge));
        Assert.Equal(data, huge[..data.Length]);
        Assert.Equal(5, await reader.ReadAsync(MiB, huge));
    }

    [Fact]
    public async Task An_append_larger_than_a_chunk_is_split_over_chunks()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/bad/oversize.bin";
        await client.CreateAsync(path);
        var data = TestData.Random((int)(2.5 * SharedClusterFixture.ChunkSize), 22);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            Assert.Equal(0, await appender.AppendAsync(data));
            await appender.CloseAsync();
        }
        var stat = (await client.StatAsync(path))!;
        Assert.Equal(data.Length, stat.Length);
        Assert.Equal(3, stat.Chunks.Count);
        Assert.Equal(TestData.Sha256(data), (await Streams.ReadAllAsync(client, path)).Hash);
    }

    [Fact]
    public async Task Chunk_servers_refuse_unknown_chunks_out_of_range_reads_and_oversize_appends()
    {
        var client = _fixture.Cluster.CreateClient();
        const string path = "/bad/raw.bin";
        await client.CreateAsync(path);
        var data = TestData.Random(10_000, 23);
        await using var appender = await client.OpenForAppendAsync(path);
        await appender.AppendAsync(data);
        await appender.FlushAsync();
        var chunk = (await client.StatAsync(path))!.Chunks.Single();

        foreach (var server in _fixture.Cluster.Launcher.ChunkServers)
        {
            using var raw = new RawChunkServer(server.GrpcAddress, _fixture.Cluster.Launcher.ClientTls());
            const ulong unknown = 0xFEEDFACE_00000001;
            Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => raw.InfoAsync(unknown))).StatusCode);
            Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => raw.ReadAsync(unknown, 0, 10))).StatusCode);
            Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => raw.AppendAsync(unknown, 1, 0, [1, 2, 3]))).StatusCode);
        }

        var replica = chunk.Replicas[0];
        using (var raw = new RawChunkServer(replica.Address, _fixture.Cluster.Launcher.ClientTls()))
        {
            var before = await raw.InfoAsync(chunk.Id);
            // Reads past the end or longer than the chunk are refused or clipped, never served from beyond the data.
            await ExpectRefusedOrEmpty(() => raw.ReadAsync(chunk.Id, ulong.MaxValue, 10));
            await ExpectRefusedOrEmpty(() => raw.ReadAsync(chunk.Id, before.Length + 1, 10));
            try
            {
                Assert.Equal(data, await raw.ReadAsync(chunk.Id, 0, uint.MaxValue));
            }
            catch (RpcException e)
            {
                Assert.Contains(e.StatusCode, new[] { StatusCode.InvalidArgument, StatusCode.OutOfRange });
            }

            // An append larger than the chunk can hold (or than the server accepts in one call).
            var oversize = TestData.Random((int)SharedClusterFixture.ChunkSize + 1, 24);
            var refused = await Assert.ThrowsAsync<RpcException>(() => raw.AppendAsync(chunk.Id, before.Epoch, before.Length, oversize));
            _output.WriteLine($"oversize append: {refused.StatusCode} {refused.Status.Detail}");
            Assert.Contains(refused.StatusCode, new[] { StatusCode.InvalidArgument, StatusCode.OutOfRange, StatusCode.ResourceExhausted });
            var after = await raw.InfoAsync(chunk.Id);
            Assert.Equal(before.Length, after.Length);
            Assert.Equal(data, await raw.ReadAsync(chunk.Id, 0, (uint)data.Length));
        }

        // The writer carries on.
        Assert.Equal(data.Length, await appender.AppendAsync(data));
        await appender.CloseAsync();
        Assert.Equal(TestData.Sha256(data.Concat(data).ToArray()), (await Streams.ReadAllAsync(client, path)).Hash);
    }

    [Fact]
    public async Task Master_refuses_unknown_paths_stale_epochs_and_unknown_chunks()
    {
        using var channel = _fixture.Cluster.Launcher.Channel(_fixture.Cluster.Launcher.MasterAddress);
        var master = new MasterGrpc.MasterClient(channel);
        var missing = await Assert.ThrowsAsync<RpcException>(() => master.AllocateChunkAsync(new AllocateChunkRequest { Path = "/bad/nope", Epoch = 1 }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);

        var client = _fixture.Cluster.CreateClient();
        const string path = "/bad/master.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        await appender.AppendAsync(TestData.Random(1000, 25));
        await appender.FlushAsync();
        var stale = await Assert.ThrowsAsync<RpcException>(() => master.AllocateChunkAsync(new AllocateChunkRequest { Path = path, Epoch = appender.Epoch - 1 }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, stale.StatusCode);
        var unknownChunk = await Assert.ThrowsAsync<RpcException>(() => master.CommitChunkAsync(new CommitChunkRequest
        {
            Path = path,
            Epoch = appender.Epoch,
            ChunkId = 0xFEEDFACE_00000002,
            Length = 5,
        }).ResponseAsync);
        // Exactly NotFound with the reason: an Internal from a crashed handler must not pass.
        Assert.Equal(StatusCode.NotFound, unknownChunk.StatusCode);
        Assert.Contains($"chunk {0xFEEDFACE_00000002UL} is not a chunk of '{path}'", unknownChunk.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(1000, (await client.StatAsync(path))!.Length);
        await appender.CloseAsync();
    }

    [Fact]
    public async Task Random_bytes_on_every_port_leave_every_server_running_and_correct()
    {
        var launcher = _fixture.Cluster.Launcher;
        var servers = launcher.ChunkServers.Append(launcher.Master).ToArray();
        var random = new Random(26);
        foreach (var server in servers)
        {
            foreach (var address in new[] { server.GrpcAddress, server.HttpAddress }.Where(a => !string.IsNullOrEmpty(a)))
            {
                var port = new Uri(address).Port;
                foreach (var prefix in new[] { ""u8.ToArray(), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray(), "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n"u8.ToArray() })
                {
                    var garbage = new byte[64 * 1024];
                    random.NextBytes(garbage);
                    using var socket = new TcpClient();
                    await socket.ConnectAsync("127.0.0.1", port);
                    var stream = socket.GetStream();
                    try
                    {
                        await stream.WriteAsync(prefix);
                        await stream.WriteAsync(garbage);
                        await stream.FlushAsync();
                    }
                    catch (IOException)
                    {
                        // The server may hang up on garbage: that is the right answer.
                    }
                }
                _output.WriteLine($"sent garbage to {server.Name} at {address}");
            }
        }

        Assert.All(servers, s => Assert.True(s.IsRunning, $"{s.Name} exited"));
        await launcher.WaitForChunkServersAliveAsync(TimeSpan.FromSeconds(30));
        var client = _fixture.Cluster.CreateClient();
        const string path = "/bad/after-garbage.bin";
        await client.CreateAsync(path);
        await using (var appender = await client.OpenForAppendAsync(path))
        {
            await Streams.AppendAsync(appender, seed: 27, blocks: 5, blockSize: MiB);
            await appender.CloseAsync();
        }
        Assert.Equal(Streams.Sha256OfBlocks(27, 5, MiB), (await Streams.ReadAllAsync(client, path)).Hash);
        Assert.All(servers, s => Assert.True(s.IsRunning, $"{s.Name} exited"));
    }

    private static async Task ExpectRefusedOrEmpty(Func<Task<byte[]>> read)
    {
        try
        {
            Assert.Empty(await read());
        }
        catch (RpcException e)
        {
            Assert.Contains(e.StatusCode, new[] { StatusCode.InvalidArgument, StatusCode.OutOfRange });
        }
    }
}
