using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using ChunkServerClient = FeitianK8s.Proto.ChunkServer.ChunkServer.ChunkServerClient;

namespace FeitianK8s.ChunkServer.Tests.Support;

/// <summary>A chunk server hosted in-process on loopback port 0, with a real gRPC client to it.</summary>
public sealed class ChunkServerUnderTest : IAsyncDisposable
{
    private readonly GrpcChannel _channel;

    private ChunkServerUnderTest(ChunkServerHost host, ChunkServerOptions options)
    {
        Host = host;
        Options = options;
        _channel = GrpcChannel.ForAddress(host.GrpcAddress, new GrpcChannelOptions { MaxReceiveMessageSize = 16 << 20, MaxSendMessageSize = 16 << 20 });
        Client = new ChunkServerClient(_channel);
    }

    public ChunkServerHost Host { get; }

    public ChunkServerOptions Options { get; }

    public ChunkServerClient Client { get; }

    public string ChunksDir => Path.Combine(Options.DataDirs[0], ChunkFiles.SubDirectory);

    public static async Task<ChunkServerUnderTest> StartAsync(ILoggerFactory loggers, ChunkServerOptions options) =>
        new(await ChunkServerHost.StartAsync(options, loggers), options);

    public static ChunkServerOptions OptionsFor(params string[] dataDirs) => new() { DataDirs = dataDirs, Node = "node-a", Rack = "rack-a" };

    public string DataFile(ulong chunkId) => Path.Combine(ChunksDir, $"{chunkId:x16}.data");

    public string ChecksumFile(ulong chunkId) => Path.Combine(ChunksDir, $"{chunkId:x16}.crc");

    public async Task<AppendResponse> AppendAsync(ulong chunkId, ulong epoch, ulong offset, byte[] data, bool fua = false) =>
        await Client.AppendAsync(new AppendRequest
        {
            ChunkId = chunkId, Epoch = epoch, ExpectedOffset = offset, Data = ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data), Fua = fua,
        });

    public async Task<byte[]> ReadAllAsync(ulong chunkId)
    {
        var result = new MemoryStream();
        while (true)
        {
            var response = await Client.ReadAsync(new ReadRequest { ChunkId = chunkId, Offset = (ulong)result.Length, Length = 1 << 20 });
            Assert.Equal(Crc32C.Compute(response.Data.Span), response.Crc32C);
            response.Data.WriteTo(result);
            if (response.Data.Length == 0 || (ulong)result.Length >= response.ChunkLength)
            {
                return result.ToArray();
            }
        }
    }

    public async Task<ChunkInfo> InfoAsync(ulong chunkId) => await Client.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunkId });

    public async ValueTask DisposeAsync()
    {
        _channel.Dispose();
        await Host.DisposeAsync();
    }
}

public static class RpcAssert
{
    /// <summary>Asserts that <paramref name="call"/> fails with <paramref name="code"/> and the feitian-reason <paramref name="reason"/>.</summary>
    public static async Task<RpcException> FailsAsync(StatusCode code, string reason, Func<Task> call)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, error.StatusCode);
        Assert.Equal(reason, FeitianStatus.ReasonOf(error));
        return error;
    }

    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
