using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static FeitianK8s.ChunkServer.Tests.Support.RpcAssert;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>Restarts on the same data dir, bytes flipped on disk, and torn tails left by a crash.</summary>
public sealed class RestartAndCorruptionTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    private Task<ChunkServerUnderTest> StartAsync(int blockSize = 4096) =>
        ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("d1"), _dir.Sub("d2")) with { BlockSize = blockSize });

    [Fact]
    public async Task Restart_on_the_same_dirs_keeps_id_chunks_lengths_seals_and_epochs_even_with_another_block_size()
    {
        var open = RandomBytes(300_000, 1);
        var sealedData = RandomBytes(50_000, 2);
        string id;
        await using (var server = await StartAsync())
        {
            id = server.Host.Id;
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 10, Epoch = 1 });
            await server.AppendAsync(10, 1, 0, open[..100_000]);
            await server.AppendAsync(10, 4, 100_000, open[100_000..]);
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 11, Epoch = 2 });
            await server.AppendAsync(11, 2, 0, sealedData);
            await server.Client.SealAsync(new SealRequest { ChunkId = 11, Epoch = 7, Length = 40_000 });
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 12, Epoch = 3 });
        }

        await using (var server = await StartAsync(blockSize: 8192))
        {
            Assert.Equal(id, server.Host.Id);
            var info = await server.InfoAsync(10);
            Assert.Equal((300_000ul, false, 4ul), (info.Length, info.Sealed, info.Epoch));
            Assert.Equal(open, await server.ReadAllAsync(10));
            info = await server.InfoAsync(11);
            Assert.Equal((40_000ul, true, 7ul), (info.Length, info.Sealed, info.Epoch));
            Assert.Equal(sealedData[..40_000], await server.ReadAllAsync(11));
            info = await server.InfoAsync(12);
            Assert.Equal((0ul, false, 3ul), (info.Length, info.Sealed, info.Epoch));

            await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.StaleEpoch, () => server.AppendAsync(10, 3, 300_000, [1]));
            await FailsAsync(StatusCode.FailedPrecondition, ErrorReasons.Sealed, () => server.AppendAsync(11, 7, 40_000, [1]));
            await server.AppendAsync(10, 4, 300_000, [9, 9, 9]);
            Assert.Equal(300_003ul, (await server.InfoAsync(10)).Length);
        }
    }

    [Fact]
    public async Task A_flipped_byte_in_a_chunk_file_makes_reads_of_that_block_fail_with_data_loss()
    {
        await using var server = await StartAsync();
        var data = RandomBytes(20_000, 3);
        await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 20, Epoch = 1 });
        await server.AppendAsync(20, 1, 0, data, fua: true);

        var path = Directory.GetFiles(server.Options.DataDirs.Select(d => Path.Combine(d, "chunks")).First(d => Directory.GetFiles(d, "*.data").Length > 0), $"{20:x16}.data").Single();
        FlipByte(path, 9000);

        var error = await FailsAsync(StatusCode.DataLoss, ErrorReasons.Corrupt,
            async () => await server.Client.ReadAsync(new ReadRequest { ChunkId = 20, Offset = 8000, Length = 2000 }));
        Assert.Contains("chunk 20", error.Status.Detail);
        Assert.Contains("offset 8192", error.Status.Detail);
        output.WriteLine($"read refused: {error.Status.Detail}");

        // Blocks that were not touched still read back correctly.
        var before = await server.Client.ReadAsync(new ReadRequest { ChunkId = 20, Offset = 0, Length = 8192 });
        Assert.Equal(data[..8192], before.Data.ToByteArray());
        var after = await server.Client.ReadAsync(new ReadRequest { ChunkId = 20, Offset = 12288, Length = 10_000 });
        Assert.Equal(data[12288..], after.Data.ToByteArray());

        // A flipped byte in the checksum sidecar is caught the same way (after a restart reloads it).
        FlipByte(path, 9000);
        var crcPath = Path.ChangeExtension(path, ".crc");
        FlipByte(crcPath, ChecksumFileLayout.EntryOffset(0) + 1);
        await server.DisposeAsync();
        await using var restarted = await StartAsync();
        await FailsAsync(StatusCode.DataLoss, ErrorReasons.Corrupt,
            async () => await restarted.Client.ReadAsync(new ReadRequest { ChunkId = 20, Offset = 0, Length = 10 }));
        var rest = await restarted.Client.ReadAsync(new ReadRequest { ChunkId = 20, Offset = 4096, Length = 20_000 });
        Assert.Equal(data[4096..], rest.Data.ToByteArray());
    }

    [Fact]
    public async Task Data_written_without_its_checksums_is_cut_back_on_restart()
    {
        var acked = RandomBytes(5000, 4);
        string dataPath;
        await using (var server = await StartAsync())
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 30, Epoch = 1 });
            await server.AppendAsync(30, 1, 0, acked);
            dataPath = FindDataFile(server, 30);
        }
        // The crash: a 10 000-byte append reached the data file, its checksums never did.
        using (var file = new FileStream(dataPath, FileMode.Append))
        {
            file.Write(RandomBytes(10_000, 5));
        }

        await using (var server = await StartAsync())
        {
            Assert.Equal(5000ul, (await server.InfoAsync(30)).Length);
            Assert.Equal(acked, await server.ReadAllAsync(30));
            Assert.Equal(5000, new FileInfo(dataPath).Length);
            var more = RandomBytes(7000, 6);
            await server.AppendAsync(30, 1, 5000, more);
            Assert.Equal(acked.Concat(more).ToArray(), await server.ReadAllAsync(30));
        }
    }

    [Fact]
    public async Task Checksums_written_without_their_data_are_cut_back_on_restart()
    {
        var acked = RandomBytes(8192, 7);
        string dataPath;
        await using (var server = await StartAsync())
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 31, Epoch = 1 });
            await server.AppendAsync(31, 1, 0, acked);
            dataPath = FindDataFile(server, 31);
        }
        // The crash: the checksum of a next block landed but its data did not (or only partly).
        using (var crc = new FileStream(Path.ChangeExtension(dataPath, ".crc"), FileMode.Append))
        {
            crc.Write(BitConverter.GetBytes(Crc32C.Compute(RandomBytes(3000, 8))));
        }
        using (var data = new FileStream(dataPath, FileMode.Append))
        {
            data.Write(RandomBytes(1000, 9));
        }

        await using (var server = await StartAsync())
        {
            Assert.Equal(8192ul, (await server.InfoAsync(31)).Length);
            Assert.Equal(acked, await server.ReadAllAsync(31));
            Assert.Equal(ChecksumFileLayout.EntryOffset(2), new FileInfo(Path.ChangeExtension(dataPath, ".crc")).Length);
            await server.AppendAsync(31, 1, 8192, [1, 2, 3]);
            Assert.Equal(8195ul, (await server.InfoAsync(31)).Length);
        }
    }

    [Fact]
    public async Task A_torn_append_inside_a_partial_block_is_cut_back_to_the_acknowledged_length()
    {
        var acked = RandomBytes(4096 + 1500, 10);
        string dataPath;
        await using (var server = await StartAsync())
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 32, Epoch = 1 });
            await server.AppendAsync(32, 1, 0, acked[..4096]);
            await server.AppendAsync(32, 1, 4096, acked[4096..]);
            dataPath = FindDataFile(server, 32);
        }
        // Overwrite past the acknowledged end inside the same block; the block's checksum still covers 1500 bytes.
        using (var data = new FileStream(dataPath, FileMode.Open, FileAccess.Write))
        {
            data.Position = acked.Length;
            data.Write(RandomBytes(2000, 11));
        }

        await using (var server = await StartAsync())
        {
            Assert.Equal((ulong)acked.Length, (await server.InfoAsync(32)).Length);
            Assert.Equal(acked, await server.ReadAllAsync(32));
        }
    }

    [Fact]
    public async Task A_newer_tail_slot_whose_data_never_landed_falls_back_to_the_synced_state()
    {
        var durable = RandomBytes(4096 + 904, 12);
        string dataPath;
        await using (var server = await StartAsync())
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 33, Epoch = 1 });
            await server.AppendAsync(33, 1, 0, durable, fua: true);
            dataPath = FindDataFile(server, 33);
        }
        // The power loss: a later append's tail slot (and the CRC of the block it filled) reached the
        // disk, but only part of its data did. The slot holding the synced state must still be intact.
        var lost = RandomBytes(6000, 13);
        var grown = durable.Concat(lost).ToArray();
        using (var crc = new FileStream(Path.ChangeExtension(dataPath, ".crc"), FileMode.Open, FileAccess.ReadWrite))
        {
            var header = new byte[ChecksumFileLayout.HeaderSize];
            crc.ReadExactly(header);
            var durableSlot = Enumerable.Range(0, 2).Single(i =>
                ChecksumFileLayout.DecodeSlot(header.AsSpan(i * ChecksumFileLayout.SlotSize, ChecksumFileLayout.SlotSize))?.Length == durable.Length);
            crc.Position = ChecksumFileLayout.SlotOffset(1 - durableSlot);
            crc.Write(ChecksumFileLayout.EncodeSlot(new TailSlot(grown.Length, Crc32C.Compute(grown.AsSpan(8192)))));
            crc.Position = ChecksumFileLayout.EntryOffset(1);
            crc.Write(BitConverter.GetBytes(Crc32C.Compute(grown.AsSpan(4096, 4096))));
        }
        using (var data = new FileStream(dataPath, FileMode.Append))
        {
            data.Write(lost.AsSpan(0, 2000));
        }

        await using (var server = await StartAsync())
        {
            Assert.Equal((ulong)durable.Length, (await server.InfoAsync(33)).Length);
            Assert.Equal(durable, await server.ReadAllAsync(33));
            var next = RandomBytes(5000, 14);
            await server.AppendAsync(33, 1, (ulong)durable.Length, next);
            Assert.Equal(durable.Concat(next).ToArray(), await server.ReadAllAsync(33));
        }
        await using (var server = await StartAsync())
        {
            Assert.Equal((ulong)durable.Length + 5000, (await server.InfoAsync(33)).Length);
        }
    }

    [Fact]
    public async Task Leftover_files_of_interrupted_creates_and_copies_are_removed_on_start()
    {
        var dir = _dir.Sub("d1");
        await using (var server = await StartAsync())
        {
            await server.Client.CreateChunkAsync(new CreateChunkRequest { ChunkId = 40, Epoch = 1 });
        }
        var chunks = Path.Combine(dir, "chunks");
        File.WriteAllBytes(Path.Combine(chunks, $"{41:x16}.data"), [1, 2, 3]);
        File.WriteAllBytes(Path.Combine(chunks, $"{42:x16}.data.copying"), [1, 2, 3]);
        File.WriteAllBytes(Path.Combine(chunks, $"{43:x16}.meta.tmp"), [1, 2, 3]);

        await using (var server = await StartAsync())
        {
            Assert.Equal([40ul], server.Host.Store.Inventory().Select(c => c.Id));
            Assert.Equal(3, Directory.GetFiles(chunks).Length);
        }
    }

    private static string FindDataFile(ChunkServerUnderTest server, ulong chunkId) =>
        server.Options.DataDirs.Select(d => Path.Combine(d, "chunks", $"{chunkId:x16}.data")).Single(File.Exists);

    private static void FlipByte(string path, long offset)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        file.Position = offset;
        var b = file.ReadByte();
        file.Position = offset;
        file.WriteByte((byte)(b ^ 0x40));
    }
}
