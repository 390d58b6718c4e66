using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Google.Protobuf;
using Grpc.Net.Client;
using ChunkServerGrpc = FeitianK8s.Proto.ChunkServer.ChunkServer;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>Direct gRPC access to one chunk server, for tests that bypass the client library (as the admin CLI's role when the cluster has TLS).</summary>
public sealed class RawChunkServer(string address, FeitianK8s.Core.Security.ComponentTls? tls) : IDisposable
{
    private readonly GrpcChannel _channel = GrpcChannels.Create(address, 64 * 1024 * 1024, tls: tls);

    public ChunkServerGrpc.ChunkServerClient Client => new(_channel);

    public Task<ChunkInfo> InfoAsync(ulong chunkId) => Client.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = chunkId }, deadline: Deadline).ResponseAsync;

    public Task<AppendResponse> AppendAsync(ulong chunkId, ulong epoch, ulong offset, byte[] data, uint? crc = null) =>
        Client.AppendAsync(new AppendRequest
        {
            ChunkId = chunkId,
            Epoch = epoch,
            ExpectedOffset = offset,
            Data = ByteString.CopyFrom(data),
            Crc32C = crc ?? Crc32C.Compute(data),
        }, deadline: Deadline).ResponseAsync;

    public async Task<byte[]> ReadAsync(ulong chunkId, ulong offset, uint length)
    {
        var reply = await Client.ReadAsync(new ReadRequest { ChunkId = chunkId, Offset = offset, Length = length }, deadline: Deadline);
        Assert.Equal(reply.Crc32C, Crc32C.Compute(reply.Data.Span));
        return reply.Data.ToByteArray();
    }

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(15);

    public void Dispose() => _channel.Dispose();
}
