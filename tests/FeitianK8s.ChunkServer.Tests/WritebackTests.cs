using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// Early writeback: a chunk hands its appended bytes to the kernel's writeback every
/// <see cref="Chunk.WritebackStepBytes"/> (sync_file_range, no waiting), so the fdatasync of a seal finds
/// little left to write. It is only advice: what is acknowledged, sealed and read back stays exactly as before.
/// </summary>
public sealed class WritebackTests(ITestOutputHelper output) : IDisposable
{
    private const int Step = (int)Chunk.WritebackStepBytes;
    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);

    public void Dispose()
    {
        _loggers.Dispose();
        _dir.Dispose();
    }

    private ChunkStore OpenStore() => ChunkStore.Open(new ChunkStoreOptions { DataDirs = [_dir.Sub("data")] }, _loggers);

    [Fact]
    public async Task Appended_bytes_go_to_writeback_in_whole_steps_and_a_shorter_seal_takes_the_mark_back()
    {
        var data = new byte[2 * Step + 12345];
        new Random(7).NextBytes(data);
        using (var store = OpenStore())
        {
            store.Create(1, 1, 0);
            async Task AppendUpToAsync(int from, int to)
            {
                for (var at = from; at < to; at += Math.Min(1 << 20, to - at))
                {
                    var piece = data.AsMemory(at, Math.Min(1 << 20, to - at));
                    await store.AppendAsync(1, 1, (ulong)at, piece, Crc32C.Compute(piece.Span), fua: false);
                }
            }

            await AppendUpToAsync(0, Step - 1);
            Assert.Equal(0, store.WritebackBelow(1)); // less than a step: nothing handed over yet
            await AppendUpToAsync(Step - 1, Step + 5000);
            Assert.Equal(Step + 4096, store.WritebackBelow(1)); // the whole pages appended so far
            await AppendUpToAsync(Step + 5000, data.Length);
            // The step was reached by the append ending at 2 * Step + 5000; the last 7345 bytes wait for the next step.
            Assert.Equal(2 * Step + 4096, store.WritebackBelow(1));

            // A seal below the mark cuts the data file; the mark follows it down to a page boundary.
            var sealAt = Step + 100;
            await store.SealAsync(1, 1, (ulong)sealAt);
            Assert.Equal(Step, store.WritebackBelow(1));
            Assert.Equal(data.AsSpan(0, sealAt).ToArray(), await ReadAllAsync(store, sealAt));
        }

        using (var reopened = OpenStore())
        {
            var info = await reopened.InfoAsync(1);
            Assert.True(info.Sealed);
            Assert.Equal(Step + 100, info.Length);
            Assert.Equal(Step, reopened.WritebackBelow(1)); // a reopened chunk starts at its length, not at zero
            Assert.Equal(data.AsSpan(0, Step + 100).ToArray(), await ReadAllAsync(reopened, Step + 100));
        }
    }

    private static async Task<byte[]> ReadAllAsync(ChunkStore store, int length)
    {
        var all = new MemoryStream();
        while (all.Length < length)
        {
            var piece = await store.ReadAsync(1, (ulong)all.Length, (uint)Math.Min(1 << 20, length - all.Length));
            Assert.False(piece.Data.IsEmpty);
            all.Write(piece.Data.Span);
        }
        return all.ToArray();
    }

    [Fact]
    public void Starting_writeback_reports_the_kernels_error_number_instead_of_throwing()
    {
        var path = Path.Combine(_dir.Sub("files"), "f");
        using var file = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
        RandomAccess.Write(file, new byte[3 * 4096], 0);
        Assert.Equal(0, PageCache.StartWriteback(file, 0, 3 * 4096));
        const int invalidArgument = 22; // EINVAL: a negative offset
        Assert.Equal(invalidArgument, PageCache.StartWriteback(file, -4096, 4096));
        Assert.Equal(0, PageCache.StartWriteback(file, 0, 0)); // nothing to do
    }
}
