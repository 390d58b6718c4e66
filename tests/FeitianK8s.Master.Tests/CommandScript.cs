using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;

namespace FeitianK8s.Master.Tests;

/// <summary>A fixed sequence of commands touching every kind, for determinism and recovery tests.</summary>
public static class CommandScript
{
    public static List<MasterCommand> Build(int files = 20)
    {
        var commands = new List<MasterCommand>();
        long now = 1_700_000_000_000;
        MasterCommand At(MasterCommand c)
        {
            c.UnixMs = now += 7;
            return c;
        }
        for (var i = 0; i < 6; i++)
        {
            commands.Add(At(new MasterCommand
            {
                RegisterChunkServer = new RegisterChunkServerCommand
                {
                    Server = new ChunkServerRecord { Id = $"cs-{i}", Node = $"node-{i}", Rack = $"rack-{i % 3}", Address = $"http://127.0.0.1:{7000 + i}" },
                },
            }));
        }
        commands.Add(At(new MasterCommand { RegisterNode = new RegisterNodeCommand { Node = new NodeRecord { Id = "csi-node-1", Rack = "rack-1" } } }));
        var createVolume = new CreateVolumeCommand { Name = "vol-a", SizeBytes = 1 << 30, Replicas = 3 };
        createVolume.Labels.Add(new Label { Key = "team", Value = "storage" });
        commands.Add(At(new MasterCommand { CreateVolume = createVolume }));
        commands.Add(At(new MasterCommand { AcquireVolumeLease = new AcquireVolumeLeaseCommand { Name = "vol-a", Holder = "node-1" } }));
        commands.Add(At(new MasterCommand { SetVolumeReader = new SetVolumeReaderCommand { Name = "vol-a", Node = "node-4", Attached = true } }));
        commands.Add(At(new MasterCommand { SetVolumeReader = new SetVolumeReaderCommand { Name = "vol-a", Node = "node-2", Attached = true } }));
        ulong chunkId = 1;
        for (var f = 0; f < files; f++)
        {
            var path = f % 4 == 0 ? $"/volumes/vol-a/log-{f}" : $"/data/dir{f % 3}/file-{f}";
            var guard = f % 4 == 0 ? new Guard { Volume = "vol-a", Epoch = 1 } : null;
            commands.Add(At(new MasterCommand { CreateFile = new CreateFileCommand { Path = path, Replicas = 3, Guard = guard } }));
            commands.Add(At(new MasterCommand { OpenForAppend = new OpenForAppendCommand { Path = path, Guard = guard } }));
            for (var c = 0; c < 2; c++)
            {
                var allocate = new AllocateChunkCommand { Path = path, Epoch = 1, ChunkId = chunkId, MaxLength = 1 << 20 };
                allocate.ChunkServerIds.AddRange([$"cs-{(f + c) % 6}", $"cs-{(f + c + 1) % 6}", $"cs-{(f + c + 2) % 6}"]);
                commands.Add(At(new MasterCommand { AllocateChunk = allocate }));
                commands.Add(At(new MasterCommand
                {
                    CommitChunk = new CommitChunkCommand { Path = path, Epoch = 1, ChunkId = chunkId, Length = (ulong)(1000 * (f + 1)), Sealed = c == 0 },
                }));
                chunkId++;
            }
        }
        commands.Add(At(new MasterCommand { ReportBadReplica = new ReportBadReplicaCommand { ChunkId = 3, ChunkServerId = "cs-2" } }));
        commands.Add(At(new MasterCommand { RenameFile = new RenameFileCommand { From = "/data/dir1/file-1", To = "/data/renamed" } }));
        commands.Add(At(new MasterCommand { DeleteFile = new DeleteFileCommand { Path = "/data/dir2/file-2" } }));
        commands.Add(At(new MasterCommand { ResizeVolume = new ResizeVolumeCommand { Name = "vol-a", SizeBytes = 2UL << 30 } }));
        var ack = new AckDeletedChunksCommand { ChunkServerId = "cs-2" };
        ack.ChunkIds.Add(3);
        commands.Add(At(new MasterCommand { AckDeletedChunks = ack }));
        return commands;
    }

    /// <summary>Applies every command in order, asserting each one applies.</summary>
    public static MasterStateMachine ApplyAll(IEnumerable<MasterCommand> commands, MasterStateMachine? state = null)
    {
        state ??= new MasterStateMachine();
        foreach (var command in commands)
        {
            var result = state.Apply(state.LastIndex + 1, command.Clone());
            Assert.True(result.IsOk, $"command {command} was refused: {result.Error?.Message}");
        }
        return state;
    }
}
