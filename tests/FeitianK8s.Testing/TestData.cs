using System.Security.Cryptography;

namespace FeitianK8s.Testing;

/// <summary>Deterministic pseudo-random test data and hashing helpers.</summary>
public static class TestData
{
    public static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static string Sha256(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>Reads the whole stream-like source through a read function and hashes it incrementally.</summary>
    public static async Task<(string Hash, long Length)> Sha256Async(Func<long, Memory<byte>, Task<int>> read, int bufferSize = 4 * 1024 * 1024)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[bufferSize];
        long offset = 0;
        while (true)
        {
            var n = await read(offset, buffer);
            if (n == 0)
            {
                break;
            }
            hash.AppendData(buffer, 0, n);
            offset += n;
        }
        return (Convert.ToHexString(hash.GetHashAndReset()), offset);
    }
}
