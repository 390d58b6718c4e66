using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>CopyChunkFromPeer between two real chunk servers on loopback.</summary>
public sealed class PeerCopyTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _source = null!;
    private ChunkServerUnderTest _target = null!;

    public async Task InitializeAsync()
    {
        _source = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("source")));
        _target = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("target")) with { BlockSize = 8192 });
    }

    public async Task DisposeAsync()
    {
        await _target.DisposeAsync();
        await _source.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    private async Task<byte[]> SealedChunkOnSourceAsync(ulong id, int length)
    {
        var data = RandomBytes(length, (int)id);
        await _source.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = id, Epoch = 3 });
        for (var offset = 0; offset < length; offset += 1_000_000)
        {
            await _source.AppendAsync(id, 3, (ulong)offset, data[offset..Math.Min(length, offset + 1_000_000)]);
        }
        await _source.Client.SealAsync(new SealRequest { ChunkId = id, Epoch = 3, Length = (ulong)length });
        return data;
    }

    private Task<CopyChunkFromPeerResponse> CopyAsync(ulong id, ulong epoch, ulong length = 0, string? source = null) =>
        _target.Client.CopyChunkFromPeerAsync(new CopyChunkFromPeerRequest
        {
            ChunkId = id, SourceAddress = source ?? _source.Host.GrpcAddress, Epoch = epoch, Length = length,
        }).ResponseAsync;

    [Fact]
    public async Task A_sealed_chunk_is_copied_verified_and_installed_sealed_with_the_given_epoch()
    {
        var data = await SealedChunkOnSourceAsync(1, 3 * 1024 * 1024 + 12345);
        var response = await CopyAsync(1, epoch: 9, length: (ulong)data.Length);
        Assert.Equal((ulong)data.Length, response.Length);

        var info = await _target.InfoAsync(1);
        Assert.Equal(((ulong)data.Length, true, 9ul), (info.Length, info.Sealed, info.Epoch));
        Assert.Equal(data, await _target.ReadAllAsync(1));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed, () => _target.AppendAsync(1, 9, (ulong)data.Length, [1]));

        // Copying again is a no-op; the copy survives a restart of the target.
        Assert.Equal((ulong)data.Length, (await CopyAsync(1, epoch: 9)).Length);
        var options = _target.Options;
        await _target.DisposeAsync();
        _target = await ChunkServerUnderTest.StartAsync(_loggers, options);
        Assert.Equal(data, await _target.ReadAllAsync(1));
        Assert.True((await _target.InfoAsync(1)).Sealed);
    }

    [Fact]
    public async Task An_empty_sealed_chunk_is_copied()
    {
        await _source.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 2, Epoch = 1 });
        await _source.Client.SealAsync(new SealRequest { ChunkId = 2, Epoch = 1, Length = 0 });
        Assert.Equal(0ul, (await CopyAsync(2, 1)).Length);
        Assert.True((await _target.InfoAsync(2)).Sealed);
    }

    [Fact]
    public async Task Copies_that_cannot_be_made_leave_nothing_behind()
    {
        await SealedChunkOnSourceAsync(3, 100_000);
        await _source.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 4, Epoch = 1 });
        await _source.AppendAsync(4, 1, 0, RandomBytes(1000, 4));

        await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => CopyAsync(999, 1));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.InvalidArgument, () => CopyAsync(4, 1));
        await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.InvalidArgument, () => CopyAsync(3, 1, length: 99_999));
        var unreachable = await Assert.ThrowsAsync<RpcException>(() => CopyAsync(3, 1, source: "http://127.0.0.1:1"));
        Assert.Equal(StatusCode.Unavailable, unreachable.StatusCode);
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => CopyAsync(3, 1, source: "not a url"));
        await FailsAsync(StatusCode.InvalidArgument, ErrorReasons.InvalidArgument, () => CopyAsync(3, 1, source: ""));

        // A corrupt source: the copy fails and nothing is installed.
        var sourceFile = _source.DataFile(3);
        var bytes = File.ReadAllBytes(sourceFile);
        bytes[50_000] ^= 0xFF;
        File.WriteAllBytes(sourceFile, bytes);
        await FailsAsync(StatusCode.DataLoss, ErrorReasons.Corrupt, () => CopyAsync(3, 1));

        foreach (var id in new ulong[] { 3, 4, 999 })
        {
            await FailsAsync(StatusCode.NotFound, ErrorReasons.NotFound, () => _target.InfoAsync(id));
        }
        Assert.Empty(Directory.GetFiles(_target.ChunksDir));

        // A chunk that already exists here (not sealed at that length) is not overwritten.
        await _target.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 5, Epoch = 1 });
        await SealedChunkOnSourceAsync(5, 10);
        await FailsAsync(StatusCode.AlreadyExists, ErrorReasons.AlreadyExists, () => CopyAsync(5, 1));
        Assert.False((await _target.InfoAsync(5)).Sealed);
    }
}
