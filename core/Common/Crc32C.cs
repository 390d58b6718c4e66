using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace FeitianK8s.Core.Common;

/// <summary>
/// CRC32C (Castagnoli), the checksum used end to end: client, wire and disk.
/// Uses the CPU's crc32 instruction through <see cref="BitOperations.Crc32C(uint, ulong)"/>.
/// </summary>
public static class Crc32C
{
    private const uint Seed = 0xFFFFFFFFu;

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Update(Seed, data));

    /// <summary>Starts an incremental checksum; feed it with <see cref="Update"/>, end it with <see cref="Finish"/>.</summary>
    public static uint Begin() => Seed;

    public static uint Finish(uint state) => state ^ 0xFFFFFFFFu;

    public static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var word in words)
        {
            state = BitOperations.Crc32C(state, BitConverter.IsLittleEndian ? word : BinaryPrimitives.ReverseEndianness(word));
        }
        foreach (var b in data[(words.Length * sizeof(ulong))..])
        {
            state = BitOperations.Crc32C(state, b);
        }
        return state;
    }
}
