using System.Security.Cryptography;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>Concurrency, reply ordering, FLUSH/FUA semantics and device-error mapping, over real sockets.</summary>
public sealed class NbdTransmissionTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Hundreds_of_pipelined_requests_complete_and_read_back_by_handle()
    {
        var disk = new FaultInjectingBlockDevice(new MemoryBlockDevice("disk", 16L << 20));
        await using var host = await NbdTestHost.StartAsync(output, [disk], o => o.MaxInFlightRequests = 16);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

        const int count = 300;
        var expected = new Dictionary<ulong, (ulong Offset, byte[] Data)>();
        var sendWrites = Task.Run(async () =>
        {
            for (int i = 0; i < count; i++)
            {
                var data = RandomNumberGenerator.GetBytes(1 + i * 97 % 20000);
                ulong offset = (ulong)i * 40000;
                lock (expected)
                    expected[(ulong)i] = (offset, data);
                await client.SendRequestAsync(NbdCommand.Write, (ulong)i, offset, (uint)data.Length, data);
            }
        });
        var acknowledged = new HashSet<ulong>();
        for (int i = 0; i < count; i++)
        {
            var reply = await client.ReadReplyAsync().WaitAsync(Generous);
            Assert.Equal(NbdError.None, reply.Error);
            Assert.True(acknowledged.Add(reply.Handle), $"handle {reply.Handle} answered twice");
        }
        await sendWrites;

        for (int i = 0; i < count; i++)
            await client.SendRequestAsync(NbdCommand.Read, 1000 + (ulong)i, expected[(ulong)i].Offset, (uint)expected[(ulong)i].Data.Length);
        for (int i = 0; i < count; i++)
        {
            var reply = await client.ReadReplyAsync().WaitAsync(Generous);
            Assert.Equal(NbdError.None, reply.Error);
            Assert.Equal(expected[reply.Handle - 1000].Data, reply.Data);
        }
    }

    /// <summary>
    /// Replies of requests the device answers synchronously are held while more requests are buffered; the
    /// reader must send them before it waits for input or for the in-flight budget, or the client (which
    /// sends nothing more until it has its replies) and the server would wait for each other.
    /// </summary>
    [Fact]
    public async Task A_burst_of_reads_answered_at_once_gets_every_reply_while_the_budget_is_full_and_nothing_more_is_sent()
    {
        var content = RandomNumberGenerator.GetBytes(1 << 20);
        var memory = new MemoryBlockDevice("disk", content.Length);
        await memory.WriteAsync(0, content, fua: false, CancellationToken.None);
        await using var host = await NbdTestHost.StartAsync(output, [memory], o => o.MaxInFlightRequests = 4);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

        for (int round = 0; round < 3; round++)
        {
            // Small reads (held) mixed with a few larger than the held-reply bound (sent at once, after what is held).
            var burst = Enumerable.Range(0, 64)
                .Select(i => (Command: NbdCommand.Read, Handle: (ulong)(round * 1000 + i), Offset: (ulong)(i * 12_288 % (content.Length - 100_000)), Length: (uint)(i % 16 == 5 ? 80_000 : 512 + i * 61)))
                .ToList();
            await client.SendRequestsTogetherAsync(burst);
            var answered = new HashSet<ulong>();
            foreach (var _ in burst)
            {
                var reply = await client.ReadReplyAsync().WaitAsync(Generous);
                Assert.Equal(NbdError.None, reply.Error);
                Assert.True(answered.Add(reply.Handle), $"handle {reply.Handle} answered twice");
                var request = burst.Single(r => r.Handle == reply.Handle);
                Assert.Equal(content.AsSpan((int)request.Offset, (int)request.Length).ToArray(), reply.Data);
            }
        }

        // A lone request after the bursts is answered although nothing follows it.
        var last = await client.RequestAsync(NbdCommand.Read, 9999, 4096, 4096).WaitAsync(Generous);
        Assert.Equal(content.AsSpan(4096, 4096).ToArray(), last.Data);
    }

    /// <summary>
    /// A read answered at once while another request's large reply is still being written (the client is
    /// not reading yet, so that send blocks on a full socket): its reply must not be parked in the held
    /// buffer after the reader has moved on to wait for the next request. Found by the ext4 tests over
    /// nbdfuse, where `sync` and mkfs hung on such a reply.
    /// </summary>
    [Fact]
    public async Task A_read_answered_at_once_while_a_large_reply_is_blocked_on_the_socket_is_still_sent()
    {
        const int Large = 32 << 20;
        var content = RandomNumberGenerator.GetBytes(40 << 20);
        var memory = new MemoryBlockDevice("disk", content.Length);
        await memory.WriteAsync(0, content, fua: false, CancellationToken.None);
        for (int round = 0; round < 3; round++)
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var disk = new FaultInjectingBlockDevice(memory) { HeldRead = (0, gate) };
            await using var host = await NbdTestHost.StartAsync(output, [disk]);
            await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

            await client.SendRequestAsync(NbdCommand.Read, 1, 0, Large);
            await disk.HeldReadArrived.Task.WaitAsync(Generous);
            gate.SetResult();
            // Let the 32 MiB reply fill the socket buffers: its sender now waits for the client to read.
            await Task.Delay(300);
            await client.SendRequestAsync(NbdCommand.Read, 2, Large, 4096);

            var first = await client.ReadReplyAsync().WaitAsync(Generous);
            var second = await client.ReadReplyAsync().WaitAsync(Generous);
            var byHandle = new[] { first, second }.ToDictionary(r => r.Handle);
            Assert.Equal(content.AsSpan(0, Large).ToArray(), byHandle[1].Data);
            Assert.Equal(content.AsSpan(Large, 4096).ToArray(), byHandle[2].Data);
        }
    }

    [Fact]
    public async Task A_slow_request_does_not_hold_back_later_replies()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var disk = new FaultInjectingBlockDevice(new MemoryBlockDevice("disk", 1 << 20)) { HeldRead = (0, gate) };
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

        try
        {
            await client.SendRequestAsync(NbdCommand.Read, 1, 0, 4096);
            await disk.HeldReadArrived.Task.WaitAsync(Generous);

            // While request 1 is held by the device, a later write and read are answered.
            var data = RandomNumberGenerator.GetBytes(512);
            var write = await client.RequestAsync(NbdCommand.Write, 2, 8192, 512, data).WaitAsync(Generous);
            Assert.Equal(NbdError.None, write.Error);
            var read = await client.RequestAsync(NbdCommand.Read, 3, 8192, 512).WaitAsync(Generous);
            Assert.Equal(data, read.Data);

            gate.SetResult();
            var held = await client.ReadReplyAsync().WaitAsync(Generous);
            Assert.Equal((1ul, NbdError.None, 4096), (held.Handle, held.Error, held.Data.Length));
        }
        finally
        {
            gate.TrySetResult();
        }
    }

    [Fact]
    public async Task Stopping_the_server_ends_requests_stuck_in_the_device_with_ESHUTDOWN()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var disk = new FaultInjectingBlockDevice(new MemoryBlockDevice("disk", 1 << 20)) { HeldRead = (0, gate) };
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");
        await client.SendRequestAsync(NbdCommand.Read, 1, 0, 4096);
        await disk.HeldReadArrived.Task.WaitAsync(Generous);
        await host.Server.StopAsync().WaitAsync(Generous);
        var reply = await client.ReadReplyAsync().WaitAsync(Generous);
        Assert.Equal((1ul, NbdError.Shutdown), (reply.Handle, reply.Error));
    }

    [Fact]
    public async Task Flush_covers_every_write_acknowledged_before_it_and_fua_reaches_the_device()
    {
        var memory = new MemoryBlockDevice("disk", 4L << 20);
        var disk = new FaultInjectingBlockDevice(memory);
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

        for (ulong i = 0; i < 50; i++)
            await client.SendRequestAsync(NbdCommand.Write, i, i * 4096, 4096, RandomNumberGenerator.GetBytes(4096));
        for (int i = 0; i < 50; i++)
            Assert.Equal(NbdError.None, (await client.ReadReplyAsync().WaitAsync(Generous)).Error);

        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Flush, 100, 0, 0)).Error);
        Assert.True(disk.DurableWrites >= 50, $"flush covered {disk.DurableWrites} of 50 acknowledged writes");

        long fuaBefore = memory.FuaWriteCount;
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Write, 101, 0, 512, new byte[512], NbdCommandFlags.Fua)).Error);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.WriteZeroes, 102, 0, 512, flags: NbdCommandFlags.Fua | NbdCommandFlags.NoHole)).Error);
        Assert.Equal(fuaBefore + 2, memory.FuaWriteCount);
    }

    public static TheoryData<string, NbdError> DeviceErrors => new()
    {
        { nameof(BlockErrorKind.Io), NbdError.Io },
        { nameof(BlockErrorKind.NoSpace), NbdError.NoSpc },
        { nameof(BlockErrorKind.InvalidArgument), NbdError.Inval },
        { nameof(BlockErrorKind.ReadOnly), NbdError.Perm },
        { nameof(BlockErrorKind.Fenced), NbdError.Io },
        { "unexpected", NbdError.Io },
    };

    [Theory]
    [MemberData(nameof(DeviceErrors))]
    public async Task Device_errors_map_to_nbd_errors_and_acknowledged_data_stays_intact(string fault, NbdError expected)
    {
        var disk = new FaultInjectingBlockDevice(new MemoryBlockDevice("disk", 1 << 20));
        await using var host = await NbdTestHost.StartAsync(output, [disk]);
        await using var client = await RawNbdClient.OpenAsync(host.Port, "disk");

        var acknowledged = RandomNumberGenerator.GetBytes(8192);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Write, 1, 0, 8192, acknowledged)).Error);

        Func<Exception> error = Enum.TryParse<BlockErrorKind>(fault, out var kind)
            ? () => new BlockDeviceException(kind, $"injected {kind}")
            : () => new InvalidOperationException("injected bug");
        disk.FailingRange = (4096, 65536, error);
        disk.FailFlush = error;

        Assert.Equal(expected, (await client.RequestAsync(NbdCommand.Write, 2, 4096, 4096, new byte[4096])).Error);
        Assert.Equal(expected, (await client.RequestAsync(NbdCommand.Read, 3, 0, 8192)).Error);
        Assert.Equal(expected, (await client.RequestAsync(NbdCommand.Trim, 4, 0, 8192)).Error);
        Assert.Equal(expected, (await client.RequestAsync(NbdCommand.WriteZeroes, 5, 4096, 100)).Error);
        Assert.Equal(expected, (await client.RequestAsync(NbdCommand.Flush, 6, 0, 0)).Error);

        // The session survives, and every acknowledged byte is still there.
        disk.FailingRange = null;
        var back = await client.RequestAsync(NbdCommand.Read, 7, 0, 8192);
        Assert.Equal(NbdError.None, back.Error);
        Assert.Equal(acknowledged, back.Data);
    }

    [Fact]
    public async Task Client_vanishing_with_requests_in_flight_leaves_the_server_serving()
    {
        var memory = new MemoryBlockDevice("disk", 8L << 20);
        await using var host = await NbdTestHost.StartAsync(output, [memory]);
        var survivor = RandomNumberGenerator.GetBytes(65536);
        await using (var client = await RawNbdClient.OpenAsync(host.Port, "disk"))
        {
            Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Write, 1, 0, 65536, survivor)).Error);
            for (ulong i = 0; i < 64; i++)
                await client.SendRequestAsync(NbdCommand.Read, 10 + i, 0, 1 << 20);
        } // closed without reading the replies

        for (int i = 0; i < 100 && host.Server.ActiveConnections > 0; i++)
            await Task.Delay(100);
        Assert.Equal(0, host.Server.ActiveConnections);

        await using var next = await RawNbdClient.OpenAsync(host.Port, "disk");
        Assert.Equal(survivor, (await next.RequestAsync(NbdCommand.Read, 1, 0, 65536)).Data);
    }
}
