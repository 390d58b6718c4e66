using FeitianK8s.Core.Common;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;
using Grpc.Core;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// Issue 9: a mutation committed but not acknowledged (leader killed after the commit) and retried
/// by its client on the next leader is applied once: the retry carries the same request id
/// (client id + seq) and gets the first answer back.
/// </summary>
public sealed class RequestDedupTests(ITestOutputHelper output)
{
    private static MasterCommand Tracked(MasterCommand command, string client, ulong seq)
    {
        command.ClientId = client;
        command.RequestSeq = seq;
        return command;
    }

    private static MasterStateMachine StateWithVolumeAndFile()
    {
        var state = CommandScript.ApplyAll(
        [
            new MasterCommand { RegisterChunkServer = new RegisterChunkServerCommand { Server = new ChunkServerRecord { Id = "cs-1", Node = "n1", Rack = "r1", Address = "http://127.0.0.1:1" } } },
            new MasterCommand { CreateVolume = new CreateVolumeCommand { Name = "vol", SizeBytes = 1 << 30, Replicas = 1 } },
        ]);
        return state;
    }

    private static MasterCommand Allocate(ulong chunkId) => new()
    {
        AllocateChunk = new AllocateChunkCommand { Path = "/f", Epoch = 1, ChunkId = chunkId, MaxLength = 1 << 20, ChunkServerIds = { "cs-1" } },
    };

    [Fact]
    public void A_retried_allocation_lease_and_create_get_the_first_answer_and_change_nothing()
    {
        var state = StateWithVolumeAndFile();
        ExpectApplied(state, Tracked(new MasterCommand { CreateFile = new CreateFileCommand { Path = "/f", Replicas = 1 } }, "client-a", 1));
        ExpectApplied(state, Tracked(new MasterCommand { OpenForAppend = new OpenForAppendCommand { Path = "/f" } }, "client-a", 2));
        var first = (ChunkLocation)ExpectApplied(state, Tracked(Allocate(state.NextChunkId), "client-a", 3))!;
        var lease = (VolumeInfo)ExpectApplied(state, Tracked(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h" } }, "client-a", 4))!;
        var before = state.ToSnapshot().ToByteArray();

        // The retries: a new leader plans a different chunk id, the create would find the file.
        Assert.Equal(first, (ChunkLocation)ExpectApplied(state, Tracked(Allocate(state.NextChunkId + 5), "client-a", 3))!);
        Assert.Equal(lease.Epoch, ((VolumeInfo)ExpectApplied(state, Tracked(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h" } }, "client-a", 4))!).Epoch);
        Assert.Equal("/f", ((Proto.Master.FileInfo)ExpectApplied(state, Tracked(new MasterCommand { CreateFile = new CreateFileCommand { Path = "/f", Replicas = 1 } }, "client-a", 1))!).Path);
        var after = state.ToSnapshot();
        var beforeSnapshot = MasterSnapshot.Parser.ParseFrom(before);
        Assert.Equal(beforeSnapshot.Files, after.Files);
        Assert.Equal(beforeSnapshot.Volumes, after.Volumes);
        Assert.Equal(beforeSnapshot.NextChunkId, after.NextChunkId);

        // Another client, or the same client's next request, is a new mutation.
        var second = (ChunkLocation)ExpectApplied(state, Tracked(Allocate(state.NextChunkId), "client-a", 5))!;
        Assert.NotEqual(first.ChunkId, second.ChunkId);
        var other = (VolumeInfo)ExpectApplied(state, Tracked(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h2" } }, "client-b", 4))!;
        Assert.Equal(lease.Epoch + 1, other.Epoch);
        // Untracked commands (no request id) are applied every time, as before.
        var untracked = (VolumeInfo)ExpectApplied(state, new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h2" } })!;
        Assert.Equal(lease.Epoch + 2, untracked.Epoch);
    }

    [Fact]
    public void Answers_survive_a_snapshot_and_equal_histories_give_equal_snapshot_bytes()
    {
        var state = StateWithVolumeAndFile();
        ExpectApplied(state, Tracked(new MasterCommand { CreateFile = new CreateFileCommand { Path = "/f", Replicas = 1 } }, "client-a", 1));
        ExpectApplied(state, Tracked(new MasterCommand { OpenForAppend = new OpenForAppendCommand { Path = "/f" } }, "client-a", 2));
        var first = (ChunkLocation)ExpectApplied(state, Tracked(Allocate(state.NextChunkId), "client-a", 3))!;
        var snapshot = state.ToSnapshot();
        Assert.Single(snapshot.ClientSessions);

        var restored = MasterStateMachine.FromSnapshot(MasterSnapshot.Parser.ParseFrom(snapshot.ToByteArray()));
        Assert.Equal(snapshot.ToByteArray(), restored.ToSnapshot().ToByteArray());
        Assert.Equal(first, (ChunkLocation)ExpectApplied(restored, Tracked(Allocate(restored.NextChunkId), "client-a", 3))!);
        Assert.Single(restored.ToSnapshot().Files.Single(f => f.Path == "/f").Chunks);
    }

    [Fact]
    public void Sessions_are_bounded_per_client_and_in_number_of_clients()
    {
        var state = StateWithVolumeAndFile();
        for (ulong seq = 1; seq <= ClientSessions.MaxRequestsPerClient + 10; seq++)
        {
            ExpectApplied(state, Tracked(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h" } }, "client-a", seq));
        }
        var session = state.ToSnapshot().ClientSessions.Single();
        Assert.Equal(ClientSessions.MaxRequestsPerClient, session.Requests.Count);
        Assert.Equal(11UL, session.Requests[0].Seq);
        Assert.Null(state.AnswerOf("client-a", 1));
        Assert.NotNull(state.AnswerOf("client-a", 11));

        for (var c = 0; c <= ClientSessions.MaxClients; c++)
        {
            ExpectApplied(state, Tracked(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol", Holder = "h" } }, $"c-{c}", 1));
        }
        Assert.Equal(ClientSessions.MaxClients, state.ClientSessionCount);
        Assert.Null(state.AnswerOf("client-a", 11)); // the least recently used client left first
    }

    [Fact]
    public async Task A_lease_and_an_allocation_retried_on_the_next_leader_after_a_kill_are_applied_once()
    {
        await using var group = new MasterProcessGroup(output);
        group.StartAll();
        await group.WaitForLeaderAsync();
        var ids = new RequestIds("history-client");
        var leaseHeaders = ids.Next();
        var openHeaders = ids.Next();
        var allocateHeaders = ids.Next();
        await group.OnLeader(async c => await c.RegisterChunkServerAsync(new RegisterChunkServerRequest
        {
            Identity = new ChunkServerIdentity { Id = "cs-1", Node = "n1", Rack = "r1", Address = "http://127.0.0.1:9" },
            CapacityBytes = 1UL << 40,
        }));
        await group.OnLeader(async c => await c.CreateVolumeAsync(new CreateVolumeRequest { Name = "vol", SizeBytes = 1 << 30, Replicas = 1 }));
        await group.OnLeader(async c => await c.CreateFileAsync(new CreateFileRequest { Path = "/f", Replicas = 1 }));
        var lease = await group.OnLeader(async c => await c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "vol", Holder = "h" }, leaseHeaders));
        var open = await group.OnLeader(async c => await c.OpenForAppendAsync(new OpenForAppendRequest { Path = "/f" }, openHeaders));
        var chunk = await group.OnLeader(async c => await c.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f", Epoch = open.Epoch }, allocateHeaders));
        output.WriteLine($"lease epoch {lease.Epoch}, file epoch {open.Epoch}, chunk {chunk.ChunkId}");

        // The answers were "lost": the leader dies, the client sends the same requests to the next one.
        var killed = await group.WaitForLeaderAsync();
        group.Kill(killed);
        var next = await group.WaitForLeaderAsync();
        Assert.NotEqual(killed, next);
        var leaseAgain = await group.OnLeader(async c => await c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "vol", Holder = "h" }, leaseHeaders));
        var openAgain = await group.OnLeader(async c => await c.OpenForAppendAsync(new OpenForAppendRequest { Path = "/f" }, openHeaders));
        var chunkAgain = await group.OnLeader(async c => await c.AllocateChunkAsync(new AllocateChunkRequest { Path = "/f", Epoch = open.Epoch }, allocateHeaders));

        Assert.Equal(lease.Epoch, leaseAgain.Epoch);
        Assert.Equal(open.Epoch, openAgain.Epoch);
        Assert.Equal(chunk, chunkAgain);
        Assert.Equal(lease.Epoch, (await group.OnLeader(async c => await c.StatVolumeAsync(new StatVolumeRequest { Name = "vol" }))).Epoch);
        var file = await group.OnLeader(async c => await c.StatFileAsync(new StatFileRequest { Path = "/f" }));
        Assert.Equal(open.Epoch, file.Epoch);
        Assert.Equal([chunk.ChunkId], file.Chunks.Select(c => c.ChunkId));
        // A new request of the same client is a new lease.
        var newer = await group.OnLeader(async c => await c.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = "vol", Holder = "h" }, ids.Next()));
        Assert.Equal(lease.Epoch + 1, newer.Epoch);
    }

    private static object? ExpectApplied(MasterStateMachine state, MasterCommand command)
    {
        var result = state.Apply(state.LastIndex + 1, command);
        Assert.True(result.IsOk, $"{command} refused: {result.Error?.Message}");
        return result.Value;
    }
}
