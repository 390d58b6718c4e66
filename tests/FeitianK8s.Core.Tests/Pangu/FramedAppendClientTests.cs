using System.Net.Security;
using System.Net.Sockets;
using FeitianK8s.ChunkServer;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Security;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using ChunkServerClient = FeitianK8s.Proto.ChunkServer.ChunkServer.ChunkServerClient;

namespace FeitianK8s.Core.Tests.Pangu;

/// <summary>
/// The client of the framed append protocol against real in-process chunk servers with mutual TLS: pipelined
/// appends land in order and read back intact; a caller whose role may not append is refused before anything
/// is applied; and an open chunk with one replica on a server without the protocol (an older version) falls
/// back to the gRPC AppendStream for that replica and still acknowledges every append on both.
/// </summary>
public sealed class FramedAppendClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new("feitian-framed");
    private string TlsDir => Path.Combine(_dir.Path, "tls");
    private ChunkServerHost _framed = null!;
    private ChunkServerHost _older = null!;

    public async Task InitializeAsync()
    {
        LocalPki.Ensure(TlsDir);
        _framed = await StartAsync("framed", framedAppends: true);
        _older = await StartAsync("older", framedAppends: false);
    }

    public async Task DisposeAsync()
    {
        await _framed.DisposeAsync();
        await _older.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Pipelined_appends_over_mutual_tls_are_acknowledged_in_order_and_read_back_intact()
    {
        await CreateChunkAsync(_framed, 1, epoch: 4);
        var pieces = Enumerable.Range(0, 16).Select(i => TestData.Random(4096 + (i * 1000), 300 + i)).ToArray();
        await using (var stream = new ReplicaAppendStream(Transport(_framed, ComponentRoles.CsiNode), 1, 4, Timeout))
        {
            var offset = 0UL;
            var sends = new List<Task<AppendResponse>>();
            foreach (var piece in pieces)
            {
                sends.Add(stream.SendAsync(offset, piece, Crc32C.Compute(piece), fua: false));
                offset += (ulong)piece.Length;
            }
            var lengths = (await Task.WhenAll(sends)).Select(a => a.Length).ToArray();
            var expected = pieces.Select((_, i) => (ulong)pieces.Take(i + 1).Sum(p => p.Length)).ToArray();
            Assert.Equal(expected, lengths);
        }
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await ReadAllAsync(_framed, 1));
    }

    [Fact]
    public async Task Large_pipelined_appends_written_head_then_payload_over_mutual_tls_read_back_intact()
    {
        await CreateChunkAsync(_framed, 5, epoch: 2);
        // From just under to far over the size where the client writes the payload from the caller's memory after its head.
        var sizes = new[] { FramedAppendStreamTransport.DirectPayloadBytes - 1, FramedAppendStreamTransport.DirectPayloadBytes, 1 << 20, 300_001, 4096, 700_000 };
        var pieces = sizes.Select((size, i) => TestData.Random(size, 500 + i)).ToArray();
        await using (var stream = new ReplicaAppendStream(Transport(_framed, ComponentRoles.CsiNode), 5, 2, Timeout))
        {
            var offset = 0UL;
            var sends = new List<Task<AppendResponse>>();
            foreach (var (piece, i) in pieces.Select((p, i) => (p, i)))
            {
                sends.Add(stream.SendAsync(offset, piece, Crc32C.Compute(piece), fua: i % 3 == 2));
                offset += (ulong)piece.Length;
            }
            var lengths = (await Task.WhenAll(sends)).Select(a => a.Length).ToArray();
            Assert.Equal(pieces.Select((_, i) => (ulong)pieces.Take(i + 1).Sum(p => p.Length)), lengths);
        }
        var expected = pieces.SelectMany(p => p).ToArray();
        var stored = new List<byte>();
        while (stored.Count < expected.Length)
        {
            var read = await Client(_framed).ReadAsync(new ReadRequest { ChunkId = 5, Offset = (ulong)stored.Count, Length = 1 << 20 });
            Assert.False(read.Data.IsEmpty, $"the chunk ends at {stored.Count} of {expected.Length} bytes");
            stored.AddRange(read.Data);
        }
        Assert.Equal(expected, stored.ToArray());
    }

    [Fact]
    public async Task A_caller_whose_role_may_not_append_is_refused_with_permission_denied_and_nothing_is_applied()
    {
        await CreateChunkAsync(_framed, 2, epoch: 1);
        var data = TestData.Random(4096, 9);
        await using var stream = new ReplicaAppendStream(Transport(_framed, ComponentRoles.Master), 2, 1, Timeout);
        var refused = await Assert.ThrowsAsync<RpcException>(() => stream.SendAsync(0, data, Crc32C.Compute(data), fua: false));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("role master may not call /feitian.pangu.v1.ChunkServer/AppendStream", refused.Status.Detail);
        Assert.Equal(0ul, (await Client(_framed).GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = 2 })).Length);
        using var http = new HttpClient();
        Assert.Contains("feitian_chunkserver_rpc_refused_total{reason=\"wrong-role\",method=\"/feitian.pangu.v1.ChunkServer/AppendStream\",role=\"master\"} 1",
            await http.GetStringAsync(_framed.HttpAddress + "/metrics"));
    }

    [Fact]
    public async Task A_server_without_the_protocol_fails_the_framed_stream_as_unimplemented_and_applies_nothing()
    {
        await CreateChunkAsync(_older, 3, epoch: 1);
        var data = TestData.Random(4096, 10);
        await using var stream = new ReplicaAppendStream(Transport(_older, ComponentRoles.CsiNode), 3, 1, Timeout);
        var refused = await Assert.ThrowsAsync<RpcException>(() => stream.SendAsync(0, data, Crc32C.Compute(data), fua: false));
        Assert.Equal(StatusCode.Unimplemented, refused.StatusCode);
        Assert.Equal(0ul, (await Client(_older).GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = 3 })).Length);
    }

    [Fact]
    public async Task An_open_chunk_with_a_replica_on_an_older_server_appends_to_it_over_grpc_and_acknowledges_every_append()
    {
        var location = new ChunkLocation { ChunkId = 4, MaxLength = 64 << 20 };
        location.Replicas.Add(new ReplicaLocation { ChunkServerId = _framed.Id, Node = "n1", Rack = "r1", Address = _framed.GrpcAddress });
        location.Replicas.Add(new ReplicaLocation { ChunkServerId = _older.Id, Node = "n2", Rack = "r2", Address = _older.GrpcAddress });
        using var channels = new GrpcChannelCache(64 << 20, NullLoggerFactory.Instance, ClientTls(ComponentRoles.CsiNode));
        var fanOut = new ReplicaFanOut(channels, new PanguClientOptions { ChunkServerTimeout = Timeout });
        var chunk = new OpenChunk(location, "/framed/fallback", 1, fanOut, NullLogger.Instance);
        Assert.True(await chunk.CreateAsync(CancellationToken.None));

        var pieces = Enumerable.Range(0, 8).Select(i => TestData.Random(8192, 400 + i)).ToArray();
        var sent = pieces.Select(p => chunk.Send(p, fua: false)).ToArray();
        for (var i = 0; i < pieces.Length; i++)
        {
            Assert.Equal(ChunkAppendOutcome.Acknowledged, chunk.Complete(await sent[i], pieces[i].Length));
        }
        await chunk.CloseStreamsAsync();
        Assert.Equal(8L * 8192, chunk.Length);
        var expected = pieces.SelectMany(p => p).ToArray();
        Assert.Equal(expected, await ReadAllAsync(_framed, 4));
        Assert.Equal(expected, await ReadAllAsync(_older, 4));
    }

    [Fact]
    public async Task Large_frames_written_over_raw_tls_in_uneven_pieces_land_byte_identical_whatever_the_server_had_buffered()
    {
        // The server reads a large payload's missing part from the TLS stream itself: cut points anywhere (inside a
        // head, just after one, inside a payload, with the next frame in the same write) must all read back intact.
        await CreateChunkAsync(_framed, 6, epoch: 3);
        var sizes = new[] { 1 << 20, 65_536, 65_537, 4096, 200_000, 1 << 20, 70_000, 100 };
        var pieces = sizes.Select((size, i) => TestData.Random(size, 600 + i)).ToArray();
        var wire = new List<byte>(Request(new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 6, Epoch = 3 } }));
        var offset = 0UL;
        foreach (var piece in pieces)
        {
            wire.AddRange(FrameAsSent(offset, piece));
            offset += (ulong)piece.Length;
        }
        wire.AddRange(new byte[AppendStreamWire.HeaderBytes] { AppendStreamWire.End, 0, 0, 0, 0 });

        await using var tls = await OpenRawAsync(_framed);
        var bytes = wire.ToArray();
        var random = new Random(21);
        for (var at = 0; at < bytes.Length;)
        {
            var length = Math.Min(bytes.Length - at, random.Next(4) switch { 0 => random.Next(1, 40), 1 => random.Next(1, 5000), _ => random.Next(1, 300_000) });
            await tls.WriteAsync(bytes.AsMemory(at, length));
            await tls.FlushAsync();
            at += length;
        }
        var lengths = new List<ulong>();
        while (await ReadMessageAsync(tls) is { } message && message.Kind == AppendStreamWire.Answer)
        {
            var answer = AppendStreamResponse.Parser.ParseFrom(message.Body);
            Assert.Null(answer.Error);
            lengths.Add(answer.Length);
        }
        Assert.Equal(pieces.Select((_, i) => (ulong)pieces.Take(i + 1).Sum(p => p.Length)), lengths);
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), await ReadWholeChunkAsync(_framed, 6, pieces.Sum(p => p.Length)));
    }

    [Fact]
    public async Task A_tls_connection_closed_inside_a_large_payload_leaves_the_chunk_unchanged_and_the_server_serving()
    {
        await CreateChunkAsync(_framed, 7, epoch: 1);
        var first = TestData.Random(4096, 71);
        var cut = FrameAsSent(4096, TestData.Random(1 << 20, 72));
        await using (var tls = await OpenRawAsync(_framed))
        {
            await tls.WriteAsync(Request(new AppendStreamRequest { Header = new AppendStreamHeader { ChunkId = 7, Epoch = 1 } }).Concat(FrameAsSent(0, first)).ToArray());
            await tls.FlushAsync();
            var answer = await ReadMessageAsync(tls);
            Assert.Equal(AppendStreamWire.Answer, answer?.Kind);
            Assert.Equal(4096ul, AppendStreamResponse.Parser.ParseFrom(answer!.Value.Body).Length);
            // The head and a third of the payload, then the client goes away.
            await tls.WriteAsync(cut.AsMemory(0, cut.Length / 3));
            await tls.FlushAsync();
        }
        await using (var stream = new ReplicaAppendStream(Transport(_framed, ComponentRoles.CsiNode), 7, 1, Timeout))
        {
            // The server may still be tearing the dead connection down: the next stream must simply work.
            var more = TestData.Random(8192, 73);
            Assert.Equal(4096ul + 8192, (await stream.SendAsync(4096, more, Crc32C.Compute(more), fua: true)).Length);
            Assert.Equal(first.Concat(more).ToArray(), await ReadAllAsync(_framed, 7));
        }
    }

    /// <summary>A raw TLS connection (client certificate of role csi-node) that sent the preface and got Ready.</summary>
    private async Task<SslStream> OpenRawAsync(ChunkServerHost server)
    {
        var uri = new Uri(server.GrpcAddress);
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(uri.Host, uri.Port);
        var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        var options = ClientTls(ComponentRoles.CsiNode).ClientOptions(ComponentTls.ServerRoles);
        options.TargetHost = uri.Host;
        await tls.AuthenticateAsClientAsync(options);
        await tls.WriteAsync(AppendStreamWire.Preface.ToArray());
        await tls.FlushAsync();
        var ready = await ReadMessageAsync(tls);
        Assert.Equal(AppendStreamWire.Ready, ready?.Kind);
        return tls;
    }

    /// <summary>The next message (kind, body), or null when the server closed the connection.</summary>
    private static async Task<(byte Kind, byte[] Body)?> ReadMessageAsync(Stream stream)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var header = new byte[AppendStreamWire.HeaderBytes];
        if (await stream.ReadAtLeastAsync(header, header.Length, throwOnEndOfStream: false, timeout.Token) < header.Length)
        {
            return null;
        }
        var body = new byte[System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1))];
        await stream.ReadExactlyAsync(body, timeout.Token);
        return (header[0], body);
    }

    private static byte[] Request(AppendStreamRequest request)
    {
        var (buffer, length) = AppendStreamWire.Encode(AppendStreamWire.Request, request);
        return buffer[..length];
    }

    /// <summary>A frame as the production client writes it: the codec's head, then the payload.</summary>
    private static byte[] FrameAsSent(ulong offset, byte[] data)
    {
        var head = new byte[AppendFrameCodec.MaxHeadBytes];
        var length = AppendFrameCodec.WriteHead(new AppendFrame { Offset = offset, Data = Google.Protobuf.ByteString.CopyFrom(data), Crc32C = Crc32C.Compute(data) }, head);
        return [.. head.AsSpan(0, length), .. data];
    }

    private async Task<byte[]> ReadWholeChunkAsync(ChunkServerHost server, ulong chunkId, int length)
    {
        var stored = new List<byte>();
        while (stored.Count < length)
        {
            var read = await Client(server).ReadAsync(new ReadRequest { ChunkId = chunkId, Offset = (ulong)stored.Count, Length = 1 << 20 });
            Assert.False(read.Data.IsEmpty, $"the chunk ends at {stored.Count} of {length} bytes");
            stored.AddRange(read.Data);
        }
        return stored.ToArray();
    }

    private async Task<ChunkServerHost> StartAsync(string name, bool framedAppends) =>
        await ChunkServerHost.StartAsync(new ChunkServerOptions
        {
            DataDirs = [Path.Combine(_dir.Path, name)],
            Node = $"node-{name}",
            Rack = $"rack-{name}",
            Tls = ComponentTls.Load(LocalPki.Files(TlsDir, ComponentRoles.ChunkServer)),
            FramedAppends = framedAppends,
        });

    private ComponentTls ClientTls(string role) => ComponentTls.Load(LocalPki.Files(TlsDir, role));

    private FramedAppendStreamTransport Transport(ChunkServerHost server, string role) => new(server.GrpcAddress, ClientTls(role), 16 << 20);

    private ChunkServerClient Client(ChunkServerHost server) =>
        new(GrpcChannels.Create(server.GrpcAddress, tls: ClientTls(ComponentRoles.Admin)));

    private async Task CreateChunkAsync(ChunkServerHost server, ulong chunkId, ulong epoch) =>
        await Client(server).CreateChunkAsync(new CreateChunkRequest { ChunkId = chunkId, Epoch = epoch });

    private async Task<byte[]> ReadAllAsync(ChunkServerHost server, ulong chunkId)
    {
        var response = await Client(server).ReadAsync(new ReadRequest { ChunkId = chunkId, Offset = 0, Length = 1 << 20 });
        Assert.Equal(Crc32C.Compute(response.Data.Span), response.Crc32C);
        return response.Data.ToByteArray();
    }
}
