using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using FeitianK8s.Core.Nbd;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>
/// Exact reads of the NBD reader over a real loopback socket, with large payloads read straight from the
/// socket once the pipe's buffered bytes are taken: every byte arrives once, in order, and the pipe goes on
/// with the bytes after the payload.
/// </summary>
public sealed class NbdPipeTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(NbdPipe.DirectReadBytes)]
    [InlineData(1 << 20)]
    [InlineData((4 << 20) + 4321)]
    public async Task A_large_payload_between_two_headers_reads_back_exactly_and_the_next_header_follows(int payloadBytes)
    {
        await using var pair = await SocketPair.OpenAsync();
        var header = RandomNumberGenerator.GetBytes(28);
        var payload = RandomNumberGenerator.GetBytes(payloadBytes);
        var next = RandomNumberGenerator.GetBytes(28);
        // Sent in uneven pieces with pauses, so reads see partial data in the pipe and on the socket.
        var send = pair.SendInPiecesAsync([.. header, .. payload, .. next], pieceBytes: 100_003);

        var reader = PipeReader.Create(pair.Server, new StreamPipeReaderOptions(bufferSize: 256 * 1024, minimumReadSize: 64 * 1024, leaveOpen: true));
        var gotHeader = new byte[28];
        Assert.True(await NbdPipe.ReadExactlyAsync(reader, gotHeader, "header", CancellationToken.None).AsTask().WaitAsync(Generous));
        var gotPayload = new byte[payloadBytes];
        Assert.True(await NbdPipe.ReadExactlyAsync(reader, pair.Server, gotPayload, "payload", CancellationToken.None).AsTask().WaitAsync(Generous));
        var gotNext = new byte[28];
        Assert.True(await NbdPipe.ReadExactlyAsync(reader, gotNext, "next header", CancellationToken.None).AsTask().WaitAsync(Generous));
        await send.WaitAsync(Generous);

        Assert.Equal(header, gotHeader);
        Assert.Equal(payload, gotPayload);
        Assert.Equal(next, gotNext);
    }

    [Fact]
    public async Task A_connection_closed_part_way_through_a_direct_read_is_a_truncated_message()
    {
        await using var pair = await SocketPair.OpenAsync();
        await pair.SendInPiecesAsync(RandomNumberGenerator.GetBytes(300_000), pieceBytes: 70_000);
        pair.Client.Shutdown(SocketShutdown.Send);

        var reader = PipeReader.Create(pair.Server, new StreamPipeReaderOptions(leaveOpen: true));
        var error = await Assert.ThrowsAsync<NbdProtocolException>(() =>
            NbdPipe.ReadExactlyAsync(reader, pair.Server, new byte[1 << 20], "write payload", CancellationToken.None).AsTask().WaitAsync(Generous));
        Assert.Contains("after 300000 of 1048576 bytes of write payload", error.Message);
    }

    [Fact]
    public async Task A_connection_closed_before_the_first_byte_of_a_direct_read_is_a_clean_end()
    {
        await using var pair = await SocketPair.OpenAsync();
        pair.Client.Shutdown(SocketShutdown.Send);
        var reader = PipeReader.Create(pair.Server, new StreamPipeReaderOptions(leaveOpen: true));
        Assert.False(await NbdPipe.ReadExactlyAsync(reader, pair.Server, new byte[1 << 20], "write payload", CancellationToken.None).AsTask().WaitAsync(Generous));
    }

    private sealed class SocketPair : IAsyncDisposable
    {
        private SocketPair(Socket client, NetworkStream server)
        {
            Client = client;
            Server = server;
        }

        public Socket Client { get; }

        public NetworkStream Server { get; }

        public static async Task<SocketPair> OpenAsync()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!);
            var server = await listener.AcceptAsync();
            return new SocketPair(client, new NetworkStream(server, ownsSocket: true));
        }

        public async Task SendInPiecesAsync(byte[] bytes, int pieceBytes)
        {
            for (var at = 0; at < bytes.Length; at += pieceBytes)
            {
                await Client.SendAsync(bytes.AsMemory(at, Math.Min(pieceBytes, bytes.Length - at)));
                await Task.Delay(2);
            }
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Server.DisposeAsync();
        }
    }
}
