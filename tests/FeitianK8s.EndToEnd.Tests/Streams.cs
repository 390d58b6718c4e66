using System.Security.Cryptography;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>Writes and reads deterministic data streams through the Pangu client.</summary>
public static class Streams
{
    public static byte[] Block(int seed, int index, int size) => TestData.Random(size, unchecked(seed * 100_003 + index));

    /// <summary>
    /// Appends <paramref name="blocks"/> blocks of <paramref name="blockSize"/> bytes keeping up to
    /// <paramref name="inFlight"/> appends outstanding; asserts that each lands right after the previous
    /// one (appends are applied in call order). Returns the SHA-256 of everything written.
    /// </summary>
    public static async Task<string> AppendAsync(IPanguAppender appender, int seed, int blocks, int blockSize, int inFlight = 4,
        Func<int, Task>? afterBlock = null)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var start = appender.Length;
        var pending = new Queue<(Task<long> Task, long Expected)>();
        for (var i = 0; i < blocks; i++)
        {
            var block = Block(seed, i, blockSize);
            hash.AppendData(block);
            pending.Enqueue((appender.AppendAsync(block), start + (long)i * blockSize));
            while (pending.Count >= inFlight)
            {
                var (task, expected) = pending.Dequeue();
                Assert.Equal(expected, await task);
            }
            if (afterBlock is not null)
            {
                await afterBlock(i);
            }
        }
        while (pending.Count > 0)
        {
            var (task, expected) = pending.Dequeue();
            Assert.Equal(expected, await task);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>Reads the whole file with a new reader, in reads larger than one RPC, and hashes it.</summary>
    public static async Task<(string Hash, long Length)> ReadAllAsync(IPanguFileSystem fs, string path, int bufferSize = 6 * 1024 * 1024)
    {
        await using var reader = await fs.OpenForReadAsync(path);
        return await TestData.Sha256Async((offset, buffer) => reader.ReadAsync(offset, buffer), bufferSize);
    }

    public static string Sha256OfBlocks(int seed, int blocks, int blockSize)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (var i = 0; i < blocks; i++)
        {
            hash.AppendData(Block(seed, i, blockSize));
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
