using FeitianK8s.Core.Common;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;

namespace FeitianK8s.Master.Tests;

public sealed class MasterStateMachineTests
{
    [Fact]
    public void SameCommandsGiveByteIdenticalSnapshots()
    {
        var commands = CommandScript.Build();
        var first = CommandScript.ApplyAll(commands).ToSnapshot().ToByteArray();
        var second = CommandScript.ApplyAll(commands).ToSnapshot().ToByteArray();
        Assert.Equal(first, second);
        Assert.True(first.Length > 1000);
    }

    [Fact]
    public void ReplayingAfterASnapshotGivesTheSameState()
    {
        var commands = CommandScript.Build();
        var whole = CommandScript.ApplyAll(commands);
        for (var cut = 0; cut <= commands.Count; cut += 17)
        {
            var prefix = CommandScript.ApplyAll(commands.Take(cut));
            var restored = MasterStateMachine.FromSnapshot(MasterSnapshot.Parser.ParseFrom(prefix.ToSnapshot().ToByteArray()));
            CommandScript.ApplyAll(commands.Skip(cut), restored);
            Assert.Equal(whole.ToSnapshot().ToByteArray(), restored.ToSnapshot().ToByteArray());
        }
    }

    [Fact]
    public void ARefusedCommandChangesNothing()
    {
        var state = CommandScript.ApplyAll(CommandScript.Build());
        var before = state.ToSnapshot().ToByteArray();
        var refused = new MasterCommand[]
        {
            new() { CreateFile = new CreateFileCommand { Path = "/data/renamed", Replicas = 3 } },
            new() { CreateFile = new CreateFileCommand { Path = "/data/renamed/child", Replicas = 3 } },
            new() { CreateFile = new CreateFileCommand { Path = "/data", Replicas = 3 } },
            new() { CreateFile = new CreateFileCommand { Path = "relative", Replicas = 3 } },
            new() { CreateFile = new CreateFileCommand { Path = "/volumes/vol-a/x", Replicas = 3, Guard = new Guard { Volume = "vol-a", Epoch = 0 } } },
            new() { OpenForAppend = new OpenForAppendCommand { Path = "/missing" } },
            new() { AllocateChunk = new AllocateChunkCommand { Path = "/data/renamed", Epoch = 0, ChunkId = 1000, MaxLength = 1, ChunkServerIds = { "cs-1" } } },
            new() { AllocateChunk = new AllocateChunkCommand { Path = "/data/renamed", Epoch = 1, ChunkId = 1, MaxLength = 1, ChunkServerIds = { "cs-1" } } },
            new() { CommitChunk = new CommitChunkCommand { Path = "/data/renamed", Epoch = 1, ChunkId = 5, Length = 1 } },
            new() { ResizeVolume = new ResizeVolumeCommand { Name = "vol-a", SizeBytes = 4096 } },
            new() { DeleteVolume = new DeleteVolumeCommand { Name = "nope" } },
            new() { RenameFile = new RenameFileCommand { From = "/data/renamed", To = "/data/dir0/file-3" } },
            new() { ReportBadReplica = new ReportBadReplicaCommand { ChunkId = 999, ChunkServerId = "cs-1" } },
        };
        foreach (var command in refused)
        {
            var result = state.Apply(state.LastIndex + 1, command);
            Assert.False(result.IsOk, $"expected {command} to be refused");
        }
        Assert.Equal(before, state.ToSnapshot().ToByteArray());
    }

    [Fact]
    public void CommitNeverShrinksAndSealedChunksDoNotGrow()
    {
        var state = new MasterStateMachine();
        Apply(state, new MasterCommand { RegisterChunkServer = new RegisterChunkServerCommand { Server = new ChunkServerRecord { Id = "a", Node = "n", Address = "http://x" } } });
        Apply(state, new MasterCommand { CreateFile = new CreateFileCommand { Path = "/f", Replicas = 1 } });
        Apply(state, new MasterCommand { AllocateChunk = new AllocateChunkCommand { Path = "/f", Epoch = 0, ChunkId = state.NextChunkId, MaxLength = 100, ChunkServerIds = { "a" } } });
        Apply(state, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 50 } });
        Apply(state, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 20 } });
        Assert.Equal(50UL, state.StatFile("/f").Length);
        Assert.Equal(ErrorReasons.TooLarge, state.Apply(state.LastIndex + 1, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 101 } }).Error!.Reason);
        Assert.Equal(MasterErrorReasons.Shrink, state.Apply(state.LastIndex + 1, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 40, Sealed = true } }).Error!.Reason);
        Apply(state, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 60, Sealed = true } });
        Assert.Equal(ErrorReasons.Sealed, state.Apply(state.LastIndex + 1, new MasterCommand { CommitChunk = new CommitChunkCommand { Path = "/f", ChunkId = 1, Length = 61 } }).Error!.Reason);
        var chunk = Assert.Single(state.StatFile("/f").Chunks);
        Assert.Equal(60UL, chunk.Length);
        Assert.True(chunk.Sealed);
    }

    [Fact]
    public void ApplyRequiresContiguousIndexes()
    {
        var state = new MasterStateMachine();
        Assert.Throws<InvalidOperationException>(() => state.Apply(2, new MasterCommand { CreateFile = new CreateFileCommand { Path = "/f", Replicas = 1 } }));
    }

    private static void Apply(MasterStateMachine state, MasterCommand command)
    {
        var result = state.Apply(state.LastIndex + 1, command);
        Assert.True(result.IsOk, result.Error?.Message);
    }
}
