using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Proto.ChunkServer;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>Registration and heartbeats against <see cref="RecordingMasterDouble"/>, a test double of the master on loopback.</summary>
public sealed class RegistrationTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    private ChunkServerOptions Options(string master) => ChunkServerUnderTest.OptionsFor(_dir.Sub("data")) with
    {
        MasterAddress = master,
        Node = "node-7",
        Rack = "rack-2",
        CapacityBytes = 10L << 30,
        HeartbeatInterval = TimeSpan.FromMilliseconds(100),
        MaxRegisterBackoff = TimeSpan.FromMilliseconds(300),
    };

    [Fact]
    public async Task Registers_with_identity_and_inventory_then_heartbeats_usage()
    {
        await using var master = await RecordingMasterDouble.StartAsync(_loggers);
        var options = Options(master.Address);
        string id;
        await using (var first = await ChunkServerUnderTest.StartAsync(_loggers, options))
        {
            id = first.Host.Id;
            await first.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 5, Epoch = 2 });
            await first.AppendAsync(5, 2, 0, RandomBytes(10_000, 1));
            await first.Client.SealAsync(new SealRequest { ChunkId = 5, Epoch = 3, Length = 10_000 });
            await first.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 6, Epoch = 1 });
        }

        while (master.Registrations.TryDequeue(out _))
        {
        }
        while (master.Heartbeats.TryDequeue(out _))
        {
        }
        await using var server = await ChunkServerUnderTest.StartAsync(_loggers, options);
        await Eventually.HoldsAsync(() => !master.Registrations.IsEmpty, "a registration");
        Assert.True(master.Registrations.TryPeek(out var registration));
        Assert.Equal(id, registration.Identity.Id);
        Assert.Equal("node-7", registration.Identity.Node);
        Assert.Equal("rack-2", registration.Identity.Rack);
        Assert.Equal(server.Host.GrpcAddress, registration.Identity.Address);
        Assert.Equal(10ul << 30, registration.CapacityBytes);
        Assert.True(registration.UsedBytes >= 10_000);
        var chunks = registration.Chunks.OrderBy(c => c.ChunkId).Select(c => (c.ChunkId, c.Length, c.Sealed, c.Epoch)).ToArray();
        Assert.Equal([(5ul, 10_000ul, true, 3ul), (6ul, 0ul, false, 1ul)], chunks);

        await Eventually.HoldsAsync(() => master.Heartbeats.Count >= 3, "three heartbeats");
        var heartbeat = master.Heartbeats.First();
        Assert.Equal((id, "node-7", "rack-2", server.Host.GrpcAddress), (heartbeat.Id, heartbeat.Node, heartbeat.Rack, heartbeat.Address));
        Assert.Equal(2ul, heartbeat.ChunkCount);
        Assert.Equal(10ul << 30, heartbeat.CapacityBytes);
        Assert.True(heartbeat.UsedBytes >= 10_000);
        await Eventually.HoldsAsync(() => server.Host.Reporter!.Registered, "reporter says registered");
    }

    [Fact]
    public async Task Deletes_what_the_master_asks_and_acknowledges_it_in_the_next_heartbeat()
    {
        await using var master = await RecordingMasterDouble.StartAsync(_loggers);
        await using var server = await ChunkServerUnderTest.StartAsync(_loggers, Options(master.Address));
        foreach (var id in new ulong[] { 1, 2, 3 })
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = id, Epoch = 1 });
        }
        await Eventually.HoldsAsync(() => !master.Heartbeats.IsEmpty, "a first heartbeat");

        master.AskToDelete(2, 404);
        await Eventually.HoldsAsync(() => master.Heartbeats.Any(h => h.DeletedChunks.Contains(2ul)) && master.Heartbeats.Any(h => h.DeletedChunks.Contains(404ul)),
            "heartbeats acknowledging chunks 2 and 404");
        Assert.False(server.Host.Store.Contains(2));
        Assert.True(server.Host.Store.Contains(1));
        Assert.True(server.Host.Store.Contains(3));
        Assert.False(File.Exists(server.DataFile(2)));

        // Acknowledged once, then no longer repeated.
        var count = master.Heartbeats.Count;
        await Eventually.HoldsAsync(() => master.Heartbeats.Count >= count + 2, "two more heartbeats");
        Assert.Empty(master.Heartbeats.Last().DeletedChunks);
        Assert.Equal(2ul, master.Heartbeats.Last().ChunkCount);
    }

    [Fact]
    public async Task Serves_while_the_master_is_down_registers_when_it_comes_up_and_again_when_it_forgets()
    {
        // Find a free port, start the server pointing at it while nothing listens there.
        int port;
        await using (var probe = await RecordingMasterDouble.StartAsync(_loggers))
        {
            port = new Uri(probe.Address).Port;
        }
        await using var server = await ChunkServerUnderTest.StartAsync(_loggers, Options($"http://127.0.0.1:{port}"));
        await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 1, Epoch = 1 });
        await server.AppendAsync(1, 1, 0, [1, 2, 3]);
        Assert.False(server.Host.Reporter!.Registered);
        await Task.Delay(500);

        await using var master = await RecordingMasterDouble.StartAsync(_loggers, port, orphans: [1]);
        await Eventually.HoldsAsync(() => master.Registrations.Count == 1, "registration once the master is up");
        Assert.Equal([1ul], master.Registrations.Single().Chunks.Select(c => c.ChunkId));
        // Orphans are deleted and acknowledged like delete_chunks.
        await Eventually.HoldsAsync(() => master.Heartbeats.Any(h => h.DeletedChunks.Contains(1ul)), "orphan deletion acknowledged");
        Assert.False(server.Host.Store.Contains(1));
        lock (master.Orphans)
        {
            master.Orphans.Clear();
        }

        master.ForgetServer();
        await Eventually.HoldsAsync(() => master.Registrations.Count == 2, "registration after known=false");
    }
}
