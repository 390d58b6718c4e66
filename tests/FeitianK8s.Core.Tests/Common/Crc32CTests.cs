using System.Numerics;
using System.Text;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Core.Tests.Common;

/// <summary>
/// The striped CRC32C (three chains per stripe, joined by the shift tables) gives exactly the bytes-at-a-time
/// CRC32C for every length, alignment and split of incremental updates.
/// </summary>
public sealed class Crc32CTests
{
    /// <summary>Independent of the code under test: one crc32 instruction per byte.</summary>
    private static uint Reference(ReadOnlySpan<byte> data)
    {
        var state = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            state = BitOperations.Crc32C(state, b);
        }
        return state ^ 0xFFFFFFFFu;
    }

    [Fact]
    public void Known_check_values()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));
        // RFC 3720 (iSCSI) B.4 vectors: 32 bytes of zeros, of ones, ascending and descending.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));
        Assert.Equal(0x113FDB5Cu, Crc32C.Compute(Enumerable.Range(0, 32).Select(i => (byte)(31 - i)).ToArray()));
        Assert.Equal(0u, Crc32C.Compute([]));
    }

    [Fact]
    public void Lengths_around_every_stripe_boundary_match_the_reference()
    {
        var data = RandomBytes(3 * 4080 + 3 * 384 + 64, seed: 1);
        // Short stripes are 3 x 128 = 384 bytes, long ones 3 x 1360 = 4080; 4 KiB and 1 MiB are the hot sizes.
        var lengths = new[] { 384, 768, 4080, 4096, 8160, 8192, 4080 + 384, 4080 + 768, 2 * 4080 + 384, 3 * 4080 + 3 * 384 }
            .SelectMany(n => Enumerable.Range(-9, 19).Select(d => n + d))
            .Where(n => n >= 0 && n <= data.Length);
        foreach (var length in lengths)
        {
            Assert.True(Reference(data.AsSpan(0, length)) == Crc32C.Compute(data.AsSpan(0, length)), $"length {length}");
        }
        var mib = RandomBytes(1 << 20, seed: 2);
        Assert.Equal(Reference(mib), Crc32C.Compute(mib));
    }

    [Fact]
    public void Random_lengths_and_offsets_match_the_reference()
    {
        var random = new Random(3);
        var data = RandomBytes(70_000 + 8, seed: 4);
        for (var i = 0; i < 300; i++)
        {
            var length = random.Next(0, 70_001);
            var offset = random.Next(0, 8); // unaligned starts too
            var slice = data.AsSpan(offset, length);
            Assert.True(Reference(slice) == Crc32C.Compute(slice), $"length {length} at offset {offset}");
        }
    }

    [Fact]
    public void Incremental_updates_split_anywhere_match_the_reference()
    {
        var random = new Random(5);
        var data = RandomBytes(70_000, seed: 6);
        for (var i = 0; i < 200; i++)
        {
            var length = random.Next(0, 70_001);
            var expected = Reference(data.AsSpan(0, length));
            var state = Crc32C.Begin();
            var position = 0;
            var pieces = new List<int>();
            while (position < length)
            {
                // Mostly small pieces, sometimes big ones, so splits fall inside stripes and inside words.
                var piece = Math.Min(length - position, random.Next(4) == 0 ? random.Next(0, 20_000) : random.Next(0, 600));
                state = Crc32C.Update(state, data.AsSpan(position, piece));
                pieces.Add(piece);
                position += piece;
            }
            Assert.True(expected == Crc32C.Finish(state), $"length {length} in pieces {string.Join(",", pieces)}");
        }
    }

    [Fact]
    public void Striped_update_equals_the_serial_loop_from_any_state()
    {
        var random = new Random(7);
        var data = RandomBytes(20_000, seed: 8);
        for (var i = 0; i < 200; i++)
        {
            var state = (uint)random.NextInt64(0, 1L << 32);
            var slice = data.AsSpan(0, random.Next(0, data.Length + 1));
            Assert.Equal(Crc32C.UpdateSerial(state, slice), Crc32C.Update(state, slice));
        }
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
