using FeitianK8s.Master.Log;
using FeitianK8s.Master.State;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Tests;

public sealed class MasterLogStoreTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ILogger _logger = new TestOutputLoggerProvider(output).CreateLogger("log");

    public void Dispose() => _dir.Dispose();

    /// <summary>Applies and logs each command as its own fsync'd entry; snapshots after the given counts.</summary>
    private MasterStateMachine WriteLog(IReadOnlyList<MasterCommand> commands, params int[] snapshotAfter)
    {
        var (store, state) = MasterLogStore.Open(_dir.Path, _logger);
        using (store)
        {
            for (var i = 0; i < commands.Count; i++)
            {
                var index = state.LastIndex + 1;
                Assert.True(state.Apply(index, commands[i].Clone()).IsOk);
                store.Append([new LogEntry { Index = index, Command = commands[i] }]);
                if (snapshotAfter.Contains(i + 1))
                {
                    store.WriteSnapshot(state.ToSnapshot());
                }
            }
        }
        return state;
    }

    private MasterStateMachine Reopen()
    {
        var (store, state) = MasterLogStore.Open(_dir.Path, _logger);
        store.Dispose();
        return state;
    }

    private string LastSegment() => Directory.GetFiles(_dir.Path, "log-*.bin").Order(StringComparer.Ordinal).Last();

    private static byte[] Bytes(MasterStateMachine state) => state.ToSnapshot().ToByteArray();

    [Fact]
    public void RecoveryReplaysEveryLoggedCommand()
    {
        var written = WriteLog(CommandScript.Build());
        Assert.Equal(Bytes(written), Bytes(Reopen()));
    }

    [Fact]
    public void TornLastRecordIsIgnoredAndCutOff()
    {
        var commands = CommandScript.Build();
        var expected = CommandScript.ApplyAll(commands.Take(commands.Count - 1));
        WriteLog(commands);
        var segment = LastSegment();
        var length = new System.IO.FileInfo(segment).Length;
        using (var file = new FileStream(segment, FileMode.Open))
        {
            file.SetLength(length - 3);
        }
        var recovered = Reopen();
        Assert.Equal(Bytes(expected), Bytes(recovered));
        Assert.True(new System.IO.FileInfo(LastSegment()).Length < length - 3, "the torn record was cut off");

        // The log accepts new entries after the cut and recovers them.
        var more = WriteLog([new MasterCommand { UnixMs = 1, CreateFile = new CreateFileCommand { Path = "/after-tear", Replicas = 1 } }]);
        Assert.Equal(Bytes(more), Bytes(Reopen()));
        Assert.Equal("/after-tear", Reopen().StatFile("/after-tear").Path);
    }

    [Fact]
    public void CorruptLastRecordIsIgnored()
    {
        var commands = CommandScript.Build();
        var expected = CommandScript.ApplyAll(commands.Take(commands.Count - 1));
        WriteLog(commands);
        var segment = LastSegment();
        var bytes = File.ReadAllBytes(segment);
        bytes[^2] ^= 0x5A;
        File.WriteAllBytes(segment, bytes);
        Assert.Equal(Bytes(expected), Bytes(Reopen()));
    }

    [Fact]
    public void ZeroFilledTailIsIgnored()
    {
        var written = WriteLog(CommandScript.Build());
        using (var file = new FileStream(LastSegment(), FileMode.Append))
        {
            file.Write(new byte[4096]);
        }
        Assert.Equal(Bytes(written), Bytes(Reopen()));
    }

    [Fact]
    public void CorruptionBeforeTheTailRefusesToStart()
    {
        WriteLog(CommandScript.Build());
        var segment = LastSegment();
        var bytes = File.ReadAllBytes(segment);
        bytes[12] ^= 0xFF;
        File.WriteAllBytes(segment, bytes);
        var error = Assert.Throws<InvalidDataException>(Reopen);
        output.WriteLine(error.ToString());
    }

    [Fact]
    public void SnapshotThenLogRecoversTheSameState()
    {
        var commands = CommandScript.Build();
        var written = WriteLog(commands, 30, 90);
        Assert.Equal(2, Directory.GetFiles(_dir.Path, "snapshot-*.bin").Length);
        Assert.Equal(Bytes(written), Bytes(Reopen()));
    }

    [Fact]
    public void UnreadableNewestSnapshotFallsBackToThePreviousOne()
    {
        var commands = CommandScript.Build();
        var written = WriteLog(commands, 30, 90);
        var newest = Directory.GetFiles(_dir.Path, "snapshot-*.bin").Order(StringComparer.Ordinal).Last();
        var bytes = File.ReadAllBytes(newest);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(newest, bytes);
        Assert.Equal(Bytes(written), Bytes(Reopen()));
    }

    [Fact]
    public void OldSnapshotsAndSegmentsAreRemoved()
    {
        WriteLog(CommandScript.Build(), 10, 20, 30, 40);
        var snapshots = Directory.GetFiles(_dir.Path, "snapshot-*.bin").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(2, snapshots.Count);
        Assert.EndsWith($"{30:D20}.bin", snapshots[0]);
        Assert.Equal(Bytes(CommandScript.ApplyAll(CommandScript.Build())), Bytes(Reopen()));
    }

    [Fact]
    public void ASecondStoreOnTheSameDirectoryIsRefused()
    {
        var (store, _) = MasterLogStore.Open(_dir.Path, _logger);
        using (store)
        {
            var error = Assert.Throws<IOException>(() => MasterLogStore.Open(_dir.Path, _logger));
            Assert.Contains("in use", error.Message);
        }
        MasterLogStore.Open(_dir.Path, _logger).Store.Dispose();
    }
}
