using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Testing;
using Grpc.Core;

namespace FeitianK8s.Core.Tests.Pangu;

/// <summary>
/// The framed append client against a raw TCP peer on loopback that behaves like a server predating the
/// protocol at its most abrupt: it reads the preface, then drops the connection with a reset. The client must
/// send nothing after the preface until Ready (so it cannot race the refusal with writes of its own), and every
/// frame of a full pipeline must fail as Unimplemented, the answer that makes an open chunk fall back to gRPC,
/// never as an unreachable replica.
/// </summary>
public sealed class FramedAppendPrefaceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_peer_that_resets_after_the_preface_fails_every_pipelined_frame_as_unimplemented_and_receives_nothing_else()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var peer = ResetAfterPrefaceAsync(listener);

        await using var stream = new ReplicaAppendStream(new FramedAppendStreamTransport($"http://127.0.0.1:{port}", tls: null, 16 << 20), 7, 1, Timeout);
        var pieces = Enumerable.Range(0, 8).Select(i => TestData.Random(8192 + (i * 50_000), 900 + i)).ToArray();
        var sends = new List<Task<AppendResponse>>();
        var offset = 0UL;
        foreach (var piece in pieces)
        {
            sends.Add(stream.SendAsync(offset, piece, Crc32C.Compute(piece), fua: false));
            offset += (ulong)piece.Length;
        }

        var bytesAfterPreface = await peer;
        Assert.Equal(0, bytesAfterPreface);
        foreach (var send in sends)
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => send);
            Assert.Equal(StatusCode.Unimplemented, refused.StatusCode);
        }
    }

    /// <summary>Reads the preface, counts what else arrives within half a second, then closes with a reset (linger 0).</summary>
    private static async Task<int> ResetAfterPrefaceAsync(TcpListener listener)
    {
        using var socket = await listener.AcceptSocketAsync();
        var preface = new byte[AppendStreamWire.Preface.Length];
        var read = 0;
        while (read < preface.Length)
        {
            var n = await socket.ReceiveAsync(preface.AsMemory(read), SocketFlags.None);
            Assert.True(n > 0, "the client closed before sending its whole preface");
            read += n;
        }
        Assert.Equal(AppendStreamWire.Preface.ToArray(), preface);

        var more = 0;
        var buffer = new byte[64 << 10];
        using (var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(500)))
        {
            try
            {
                while (true)
                {
                    var n = await socket.ReceiveAsync(buffer, SocketFlags.None, quiet.Token);
                    if (n == 0)
                    {
                        break;
                    }
                    more += n;
                }
            }
            catch (OperationCanceledException)
            {
            }
        }
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
        return more;
    }
}
