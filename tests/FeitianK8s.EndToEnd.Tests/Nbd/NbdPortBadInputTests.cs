using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>Garbage on the NBD port of `feitian up` closes only the offending connection and changes no data.</summary>
public sealed class NbdPortBadInputTests(ITestOutputHelper output)
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Random_bytes_and_truncated_requests_close_only_their_connection()
    {
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("bad", "16MiB");
        var port = cluster.Up.NbdPort;
        var pattern = TestData.Random(1 << 20, seed: 77);
        await using var good = await NbdWireClient.OpenAsync(port, "bad");
        await good.WriteCheckedAsync(0, pattern);

        // Random bytes instead of the client flags, and a handshake cut in the middle of an option.
        await AssertServerClosesAsync(port, TestData.Random(64 * 1024, seed: 1), "random bytes before the handshake");
        var cutOption = new byte[4 + 5];
        BinaryPrimitives.WriteUInt32BigEndian(cutOption, 3);
        "IHAVE"u8.CopyTo(cutOption.AsSpan(4));
        await AssertServerClosesAsync(port, cutOption, "a truncated option header", shutdownSend: true);
        var hugeOption = new byte[4 + 16];
        BinaryPrimitives.WriteUInt32BigEndian(hugeOption, 3);
        BinaryPrimitives.WriteUInt64BigEndian(hugeOption.AsSpan(4), NbdWireClient.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(hugeOption.AsSpan(12), 7);
        BinaryPrimitives.WriteUInt32BigEndian(hugeOption.AsSpan(16), uint.MaxValue);
        await AssertServerClosesAsync(port, hugeOption, "an option claiming 4 GiB of data");

        // After a good handshake: random bytes where a request header belongs.
        await using (var garbage = await NbdWireClient.OpenAsync(port, "bad"))
        {
            await garbage.SendRawAsync(TestData.Random(4096, seed: 2));
            await garbage.Closed.WaitAsync(CloseTimeout);
        }

        // A write whose payload stops short, then the client half-closes: the server sees end of
        // stream inside the payload, closes, and nothing of the write may land.
        await using (var truncated = await NbdWireClient.OpenAsync(port, "bad"))
        {
            var header = new byte[28 + 100];
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdWireClient.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), NbdWireClient.CmdWrite);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), 99);
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), 4 << 20);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), 1 << 20);
            header.AsSpan(28).Fill(0xEE);
            await truncated.SendRawAsync(header);
            await AssertClosedWithoutReplyAsync(truncated, "a write whose payload stops 1 MiB - 100 bytes short");
        }
        // And a request header cut after 13 bytes. The half-close keeps anything (such as the
        // disconnect request sent on dispose) from completing the header.
        await using (var cut = await NbdWireClient.OpenAsync(port, "bad"))
        {
            var header = new byte[28];
            BinaryPrimitives.WriteUInt32BigEndian(header, NbdWireClient.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), NbdWireClient.CmdWrite);
            await cut.SendRawAsync(header.AsMemory(0, 13));
            await AssertClosedWithoutReplyAsync(cut, "a request header cut after 13 bytes");
        }

        // Out-of-range requests get the errors the protocol names (EINVAL for reads, ENOSPC for writes) on a connection that stays usable.
        Assert.Equal(22u, (await good.ReadAsync(16 << 20, 4096)).Error);
        Assert.Equal(28u, (await good.WriteAsync((16 << 20) - 100, new byte[4096])).Error);

        // The first connection, and a new one, still see exactly the acknowledged data.
        var first = await good.ReadCheckedAsync(0, 1 << 20);
        var truncatedRange = await good.ReadCheckedAsync(4 << 20, 1 << 20);
        var tail = await good.ReadCheckedAsync((16 << 20) - 4096, 4096);
        Assert.True(pattern.AsSpan().SequenceEqual(first), "acknowledged data changed");
        Assert.True(truncatedRange.AsSpan().IndexOfAnyExcept((byte)0) < 0, "a truncated write landed");
        Assert.True(tail.AsSpan().IndexOfAnyExcept((byte)0) < 0, "an out-of-range write landed");
        await using var fresh = await NbdWireClient.OpenAsync(port, "bad");
        await fresh.WriteCheckedAsync(8 << 20, pattern);
        var seenByOther = await good.ReadCheckedAsync(8 << 20, 1 << 20);
        Assert.True(pattern.AsSpan().SequenceEqual(seenByOther), "a write on a new connection is not seen by the first one");
        Assert.False(cluster.Up.HasExited);
        await ExternalTool.RunCheckedAsync(output, "nbdinfo", ["--size", cluster.Up.NbdUri("bad")], TimeSpan.FromMinutes(1));
    }

    /// <summary>Half-closes <paramref name="client"/> and waits for the server to close the connection without sending any reply.</summary>
    private async Task AssertClosedWithoutReplyAsync(NbdWireClient client, string what)
    {
        client.ShutdownSend();
        try
        {
            await client.Closed.WaitAsync(CloseTimeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"the server kept the connection open after {what} and end of stream");
        }
        var failure = client.ReceiveFailure;
        Assert.True(failure is EndOfStreamException or IOException { InnerException: SocketException },
            $"after {what} the connection ended with {failure?.GetType().Name}: {failure?.Message} instead of a plain close (a reply was sent?)");
        output.WriteLine($"server closed the connection after {what} ({failure?.GetType().Name})");
    }

    private async Task AssertServerClosesAsync(int port, byte[] bytes, string what, bool shutdownSend = false)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        try
        {
            await socket.SendAsync(bytes);
            if (shutdownSend)
            {
                socket.Shutdown(SocketShutdown.Send);
            }
        }
        catch (SocketException)
        {
            // The server may close while we still send; that is the expected outcome.
        }
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(CloseTimeout);
        try
        {
            while (await socket.ReceiveAsync(buffer, timeout.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"the server kept a connection open after {what}");
        }
        output.WriteLine($"server closed the connection after {what}");
    }
}
