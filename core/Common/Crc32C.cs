using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FeitianK8s.Core.Common;

/// <summary>
/// CRC32C (Castagnoli), the checksum used end to end: client, wire and disk.
/// Uses the CPU's crc32 instruction through <see cref="BitOperations.Crc32C(uint, ulong)"/>.
/// </summary>
/// <remarks>
/// One crc32 chain is latency bound (3 cycles per 8 bytes, 1 instruction per cycle possible), so long
/// inputs are cut into stripes of three equal lanes run as three independent chains in one loop, then
/// joined. The raw state update (no seed, no final xor) is linear over GF(2): feeding bytes D from state s
/// gives Shift(s) ^ Raw(D) where Raw(D) is D fed from state 0 and Shift(s) is s fed with |D| zero bytes.
/// Hence a stripe A|B|C from s is Shift(Shift(a) ^ b) ^ c with a = A from s, b = B from 0, c = C from 0,
/// and Shift, being linear, is the xor of four 256-entry tables indexed by the bytes of s.
/// </remarks>
public static class Crc32C
{
    private const uint Seed = 0xFFFFFFFFu;

    /// <summary>3 x 1360 = 4080: a 4 KiB block is one long stripe plus 16 serial bytes; 1 MiB leaves 16 bytes too.</summary>
    private const int LongLane = 1360;

    /// <summary>For what is left after the long stripes (and inputs under 4080 bytes).</summary>
    private const int ShortLane = 128;

    private static readonly uint[] LongShift = BuildShiftTable(LongLane);
    private static readonly uint[] ShortShift = BuildShiftTable(ShortLane);

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Update(Seed, data));

    /// <summary>Starts an incremental checksum; feed it with <see cref="Update"/>, end it with <see cref="Finish"/>.</summary>
    public static uint Begin() => Seed;

    public static uint Finish(uint state) => state ^ 0xFFFFFFFFu;

    public static uint Update(uint state, ReadOnlySpan<byte> data)
    {
        if (data.Length >= 3 * ShortLane)
        {
            ref var start = ref MemoryMarshal.GetReference(data);
            var done = 0;
            if (data.Length >= 3 * LongLane)
            {
                state = UpdateStripes(state, ref start, data.Length, ref done, LongLane, LongShift);
            }
            state = UpdateStripes(state, ref start, data.Length, ref done, ShortLane, ShortShift);
            data = data[done..];
        }
        return UpdateSerial(state, data);
    }

    /// <summary>The plain single-chain loop: remainders, table building, and the reference the tests and bench compare with.</summary>
    internal static uint UpdateSerial(uint state, ReadOnlySpan<byte> data)
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

    /// <summary>Feeds every whole stripe of 3 x <paramref name="lane"/> bytes from offset <paramref name="done"/>, advancing it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint UpdateStripes(uint state, ref byte start, int length, ref int done, int lane, uint[] shift)
    {
        ref var table = ref MemoryMarshal.GetArrayDataReference(shift);
        while (length - done >= 3 * lane)
        {
            ref var lane0 = ref Unsafe.Add(ref start, done);
            ref var lane1 = ref Unsafe.Add(ref lane0, lane);
            ref var lane2 = ref Unsafe.Add(ref lane1, lane);
            uint a = state, b = 0, c = 0;
            for (nint i = 0; i < lane; i += sizeof(ulong))
            {
                a = BitOperations.Crc32C(a, ReadWord(ref lane0, i));
                b = BitOperations.Crc32C(b, ReadWord(ref lane1, i));
                c = BitOperations.Crc32C(c, ReadWord(ref lane2, i));
            }
            state = Shift(ref table, Shift(ref table, a) ^ b) ^ c;
            done += 3 * lane;
        }
        return state;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ReadWord(ref byte lane, nint offset)
    {
        var word = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref lane, offset));
        return BitConverter.IsLittleEndian ? word : BinaryPrimitives.ReverseEndianness(word);
    }

    /// <summary>The state after feeding a lane of zero bytes from <paramref name="s"/>; table is 4 x 256 entries, one block per byte of s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Shift(ref uint table, uint s) =>
        Unsafe.Add(ref table, (nint)(s & 0xFF))
        ^ Unsafe.Add(ref table, 256 + (nint)((s >> 8) & 0xFF))
        ^ Unsafe.Add(ref table, 512 + (nint)((s >> 16) & 0xFF))
        ^ Unsafe.Add(ref table, 768 + (nint)(s >> 24));

    private static uint[] BuildShiftTable(int lane)
    {
        Span<byte> zeros = stackalloc byte[lane];
        zeros.Clear();
        var table = new uint[4 * 256];
        for (var k = 0; k < 4; k++)
        {
            for (uint v = 0; v < 256; v++)
            {
                table[k * 256 + (int)v] = UpdateSerial(v << (8 * k), zeros);
            }
        }
        return table;
    }
}
