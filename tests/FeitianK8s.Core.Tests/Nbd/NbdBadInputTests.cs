using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>
/// Malformed or hostile input: each gets the error the spec names or a closed connection, changes
/// nothing on the device, and never disturbs a second client writing and reading concurrently.
/// </summary>
public sealed class NbdBadInputTests(ITestOutputHelper output)
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);
    private const long Size = 8L << 20;

    [Fact]
    public async Task Bad_input_on_other_connections_never_disturbs_a_healthy_client()
    {
        var disk = new MemoryBlockDevice("disk", Size);
        await using var host = await NbdTestHost.StartAsync(output, [disk], o => o.HandshakeTimeout = TimeSpan.FromSeconds(5));
        // The healthy client owns the first MiB; the attacks below aim at the rest, which must stay zero.
        using var stop = new CancellationTokenSource();
        var progress = new HealthyProgress();
        var healthy = HealthyClientLoopAsync(host.Port, progress, stop.Token);
        // The attacks start only once the healthy client has a working connection.
        await progress.WaitForRoundsAsync(1, healthy);

        int beforeAttacks = progress.Rounds;
        await RandomBytesAsync(host.Port);
        await TruncatedHandshakeAsync(host.Port);
        await BadOptionMagicAsync(host.Port);
        await UnknownClientFlagsAsync(host.Port);
        await UnknownExportNameAsync(host.Port);
        await OversizeOptionAsync(host.Port);
        await BadRequestMagicAsync(host.Port);
        await TruncatedWriteAsync(host.Port);
        await TruncatedHeaderAsync(host.Port);
        await OversizeWriteClosesAsync(host.Port);
        await ErrorsThatKeepTheConnectionAsync(host.Port);
        await HalfOpenHandshakeIsTimedOutAsync(host.Port);

        // The same healthy connection still completes verified rounds after every attack.
        int afterAttacks = progress.Rounds;
        await progress.WaitForRoundsAsync(afterAttacks + 2, healthy);
        stop.Cancel();
        int rounds = await healthy;
        output.WriteLine($"healthy client completed {rounds} verified write/read rounds ({afterAttacks - beforeAttacks} during the attacks)");
        Assert.True(rounds >= afterAttacks + 2, $"the healthy client stopped at {rounds} rounds, {afterAttacks} were done when the attacks ended");

        var rest = new byte[Size - (1 << 20)];
        await disk.ReadAsync(1 << 20, rest);
        Assert.True(rest.AsSpan().IndexOfAnyExcept((byte)0) < 0, "no attack changed the device");

        // The server still serves new clients.
        await using var after = await RawNbdClient.OpenAsync(host.Port, "disk");
        var read = await after.RequestAsync(NbdCommand.Read, 1, 0, 4096);
        Assert.Equal(NbdError.None, read.Error);
    }

    private static async Task<int> HealthyClientLoopAsync(int port, HealthyProgress progress, CancellationToken stop)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        int rounds = 0;
        ulong handle = 0;
        while (!stop.IsCancellationRequested)
        {
            var data = RandomNumberGenerator.GetBytes(4096 + rounds % 7);
            ulong offset = (ulong)(rounds * 4099 % ((1 << 20) - 8192));
            Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Write, ++handle, offset, (uint)data.Length, data)).Error);
            var reply = await client.RequestAsync(NbdCommand.Read, ++handle, offset, (uint)data.Length);
            Assert.Equal(NbdError.None, reply.Error);
            Assert.Equal(data, reply.Data);
            rounds++;
            progress.Completed(rounds);
            await Task.Yield();
        }
        return rounds;
    }

    /// <summary>How many verified rounds the healthy client has completed, observable while it runs.</summary>
    private sealed class HealthyProgress
    {
        private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
        private int _rounds;

        public int Rounds => Volatile.Read(ref _rounds);

        public void Completed(int rounds) => Volatile.Write(ref _rounds, rounds);

        /// <summary>Waits until at least <paramref name="rounds"/> rounds are done; fails if the loop ended or the deadline passed.</summary>
        public async Task WaitForRoundsAsync(int rounds, Task loop)
        {
            var deadline = DateTime.UtcNow + Deadline;
            while (Rounds < rounds)
            {
                if (loop.IsCompleted)
                {
                    await loop; // surfaces the healthy client's failure
                    Assert.Fail($"the healthy client ended after {Rounds} rounds, waiting for {rounds}");
                }
                Assert.True(DateTime.UtcNow < deadline, $"the healthy client completed only {Rounds} of {rounds} rounds within {Deadline}");
                await Task.Delay(10);
            }
        }
    }

    private async Task RandomBytesAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.WriteRawAsync(RandomNumberGenerator.GetBytes(64 * 1024));
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "random bytes close the connection");
        output.WriteLine("random bytes: connection closed");
    }

    private async Task TruncatedHandshakeAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        await client.WriteRawAsync(new byte[] { 0x49, 0x48, 0x41 }); // the first bytes of IHAVEOPT, then EOF
        client.ShutdownSend();
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "truncated option closes the connection");
    }

    private async Task BadOptionMagicAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var bogus = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(bogus, 0x1122334455667788);
        await client.WriteRawAsync(bogus);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "bad option magic closes the connection");
    }

    private async Task UnknownClientFlagsAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync((NbdClientFlags)0x80);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "unknown client flags close the connection");
    }

    private async Task UnknownExportNameAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);
        // Options the server does not speak get ERR_UNSUP, an unknown export ERR_UNKNOWN, and haggling goes on.
        await client.SendOptionAsync((uint)NbdOption.StructuredReply, []);
        Assert.Equal(NbdOptionReply.ErrUnsup, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync(0x4242, [1, 2, 3]);
        var unsupported = await client.ReadOptionReplyAsync();
        Assert.Equal((0x4242u, NbdOptionReply.ErrUnsup), (unsupported.Option, unsupported.Type));
        Assert.Equal(NbdOptionReply.ErrUnknown, (await client.GoAsync("nope"))[^1].Type);
        await client.SendOptionAsync((uint)NbdOption.Go, [0, 0, 0x10, 0]); // name length beyond the data
        Assert.Equal(NbdOptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        await client.SendOptionAsync((uint)NbdOption.List, [1]);
        Assert.Equal(NbdOptionReply.ErrInvalid, (await client.ReadOptionReplyAsync()).Type);
        // EXPORT_NAME cannot answer with an error: an unknown name ends the session.
        await client.SendOptionAsync((uint)NbdOption.ExportName, "nope"u8);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "unknown EXPORT_NAME closes the connection");
    }

    private async Task OversizeOptionAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var header = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(header, NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), (uint)NbdOption.Go);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), uint.MaxValue);
        await client.WriteRawAsync(header);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "a 4 GiB option closes the connection");
    }

    private async Task BadRequestMagicAsync(int port)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        var payload = new byte[4096];
        Array.Fill(payload, (byte)0xee);
        await client.SendRequestAsync(NbdCommand.Write, 1, 2 << 20, 4096, payload, magic: 0xdeadbeef);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "bad request magic closes the connection");
    }

    private async Task TruncatedWriteAsync(int port)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        var message = new byte[NbdProtocol.RequestHeaderLength + 100];
        BinaryPrimitives.WriteUInt32BigEndian(message, NbdProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(6), (ushort)NbdCommand.Write);
        BinaryPrimitives.WriteUInt64BigEndian(message.AsSpan(16), 3 << 20);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(24), 4096);
        message.AsSpan(NbdProtocol.RequestHeaderLength).Fill(0xee);
        await client.WriteRawAsync(message); // 100 of 4096 payload bytes, then EOF
        client.ShutdownSend();
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "truncated write closes the connection");
    }

    private async Task TruncatedHeaderAsync(int port)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        await client.WriteRawAsync(new byte[] { 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0 });
        client.ShutdownSend();
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "truncated header closes the connection");
    }

    private async Task OversizeWriteClosesAsync(int port)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        await client.SendRequestAsync(NbdCommand.Write, 7, 4 << 20, 64u << 20, new byte[8192]);
        var reply = await client.ReadReplyAsync();
        Assert.Equal((NbdError.Inval, 7ul), (reply.Error, reply.Handle));
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "a write larger than the maximum payload closes the connection");
    }

    private async Task ErrorsThatKeepTheConnectionAsync(int port)
    {
        await using var client = await RawNbdClient.OpenAsync(port, "disk");
        Assert.Equal(Size, (long)client.ExportSize);
        var data = new byte[4096];
        Array.Fill(data, (byte)0xee);

        Assert.Equal(NbdError.Inval, (await client.RequestAsync((NbdCommand)42, 1, 2 << 20, 4096)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Cache, 2, 2 << 20, 4096)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.BlockStatus, 3, 2 << 20, 4096)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Read, 4, Size - 100, 4096)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Read, 5, ulong.MaxValue - 10, 4096)).Error);
        Assert.Equal(NbdError.NoSpc, (await client.RequestAsync(NbdCommand.Write, 6, Size - 100, 4096, data)).Error);
        Assert.Equal(NbdError.NoSpc, (await client.RequestAsync(NbdCommand.Write, 7, ulong.MaxValue - 10, 4096, data)).Error);
        Assert.Equal(NbdError.NoSpc, (await client.RequestAsync(NbdCommand.WriteZeroes, 8, Size - 100, 4096)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Trim, 9, Size, 1)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Read, 10, 0, 33u << 20)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Write, 11, 2 << 20, 4096, data, NbdCommandFlags.Df)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Read, 12, 2 << 20, 4096, flags: NbdCommandFlags.NoHole)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.WriteZeroes, 13, 2 << 20, 4096, flags: NbdCommandFlags.FastZero)).Error);
        Assert.Equal(NbdError.Inval, (await client.RequestAsync(NbdCommand.Flush, 14, 4096, 0)).Error);

        // The connection still works after every error.
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Read, 15, 2 << 20, 4096)).Error);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Flush, 16, 0, 0)).Error);
        await client.SendRequestAsync(NbdCommand.Disconnect, 17, 0, 0);
        Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "NBD_CMD_DISC closes the connection");
    }

    private async Task HalfOpenHandshakeIsTimedOutAsync(int port)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.WriteRawAsync(new byte[] { 0, 0 }); // half the client flags, then silence
        Assert.True(await client.IsClosedByServerAsync(TimeSpan.FromSeconds(30)), "a stalled handshake is closed by the handshake timeout");
    }

    [Fact]
    public async Task Read_only_export_refuses_writes_with_EPERM_and_keeps_its_data()
    {
        var frozen = new MemoryBlockDevice("frozen", 1 << 20, readOnly: true);
        await using var host = await NbdTestHost.StartAsync(output, [frozen]);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "frozen");
        Assert.True(client.Flags.HasFlag(NbdTransmissionFlags.ReadOnly));
        Assert.Equal(NbdError.Perm, (await client.RequestAsync(NbdCommand.Write, 1, 0, 512, new byte[512])).Error);
        Assert.Equal(NbdError.Perm, (await client.RequestAsync(NbdCommand.Trim, 2, 0, 512)).Error);
        Assert.Equal(NbdError.Perm, (await client.RequestAsync(NbdCommand.WriteZeroes, 3, 0, 512)).Error);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Read, 4, 0, 512)).Error);
        Assert.Equal(0, frozen.AllocatedChunks);
    }

    [Fact]
    public async Task Unix_socket_serves_the_same_protocol()
    {
        var disk = new MemoryBlockDevice("disk", 1 << 20);
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        await using var client = await RawNbdClient.ConnectUnixAsync(host.SocketPath);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        // NBD_OPT_EXPORT_NAME without NO_ZEROES: size, flags, 124 zero bytes.
        await client.SendOptionAsync((uint)NbdOption.ExportName, "disk"u8);
        byte[] reply = await client.ReadExactlyAsync(8 + 2 + 124);
        Assert.Equal(1ul << 20, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.True(reply.AsSpan(10).IndexOfAnyExcept((byte)0) < 0);
        var data = RandomNumberGenerator.GetBytes(1000);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Write, 1, 12345, 1000, data)).Error);
        Assert.Equal(data, (await client.RequestAsync(NbdCommand.Read, 2, 12345, 1000)).Data);
    }

    [Fact]
    public async Task An_exception_inside_one_session_ends_only_that_session()
    {
        var disk = new MemoryBlockDevice("disk", 1 << 20);
        var exports = new ExplodingProvider(new DictionaryBlockDeviceProvider(disk), "boom");
        using var loggers = LoggerFactory.Create(b => b.AddProvider(new TestOutputLoggerProvider(output)));
        await using var server = new NbdServer(exports, new NbdServerOptions(), loggers.CreateLogger<NbdServer>());
        await server.StartAsync();
        int port = server.TcpEndPoint!.Port;

        await using var healthy = await RawNbdClient.OpenAsync(port, "disk");
        var data = RandomNumberGenerator.GetBytes(4096);
        Assert.Equal(NbdError.None, (await healthy.RequestAsync(NbdCommand.Write, 1, 0, 4096, data)).Error);

        await using (var doomed = await RawNbdClient.ConnectAsync(port))
        {
            await doomed.ReadGreetingAsync();
            await doomed.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
            await doomed.SendOptionAsync((uint)NbdOption.Go, RawNbdClient.InfoRequest("boom"));
            Assert.True(await doomed.IsClosedByServerAsync(CloseTimeout), "the failing session is closed");
        }

        Assert.Equal(data, (await healthy.RequestAsync(NbdCommand.Read, 2, 0, 4096)).Data);
        await using var another = await RawNbdClient.OpenAsync(port, "disk");
        Assert.Equal(data, (await another.RequestAsync(NbdCommand.Read, 1, 0, 4096)).Data);
    }

    [Fact]
    public async Task A_second_server_refuses_a_live_unix_socket_but_replaces_a_stale_one()
    {
        var disk = new MemoryBlockDevice("disk", 1 << 20);
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        using var loggers = LoggerFactory.Create(b => b.AddProvider(new TestOutputLoggerProvider(output)));
        var options = new NbdServerOptions { TcpPort = null, UnixSocketPath = host.SocketPath };
        await using (var rival = new NbdServer(new DictionaryBlockDeviceProvider(), options, loggers.CreateLogger<NbdServer>()))
            await Assert.ThrowsAsync<IOException>(() => rival.StartAsync());
        await using (var stillServed = await RawNbdClient.ConnectUnixAsync(host.SocketPath))
            await stillServed.ReadGreetingAsync(); // the rival neither took nor deleted the live socket

        string stale = Path.Combine(host.Directory, "stale.sock");
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            dead.Bind(new UnixDomainSocketEndPoint(stale)); // the file stays, nobody listens
        await using var replacement = new NbdServer(new DictionaryBlockDeviceProvider(disk), new NbdServerOptions { TcpPort = null, UnixSocketPath = stale }, loggers.CreateLogger<NbdServer>());
        await replacement.StartAsync();
        await using var client = await RawNbdClient.ConnectUnixAsync(stale);
        await client.ReadGreetingAsync();
    }

    [Fact]
    public async Task Stopping_the_server_closes_sessions_and_removes_the_socket()
    {
        var disk = new MemoryBlockDevice("disk", 1 << 20);
        var host = await NbdTestHost.StartAsync(output, [disk]);
        try
        {
            await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");
            await host.Server.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(await client.IsClosedByServerAsync(CloseTimeout));
            Assert.False(File.Exists(host.SocketPath));
            var refused = await Assert.ThrowsAnyAsync<SocketException>(() => RawNbdClient.ConnectAsync(host.Port));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            await host.DisposeAsync();
        }
    }
}

/// <summary>A provider whose lookup of one name throws, standing in for a bug inside one session.</summary>
internal sealed class ExplodingProvider(IBlockDeviceProvider inner, string explodingName) : IBlockDeviceProvider
{
    public ValueTask<IBlockDevice?> OpenAsync(string name, CancellationToken ct = default) =>
        name == explodingName ? throw new InvalidOperationException($"injected failure opening '{name}'") : inner.OpenAsync(name, ct);

    public ValueTask<IReadOnlyList<string>> ListAsync(CancellationToken ct = default) => inner.ListAsync(ct);
}
