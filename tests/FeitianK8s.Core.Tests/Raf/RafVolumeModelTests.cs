using FeitianK8s.Core.Raf;

namespace FeitianK8s.Core.Tests.Raf;

/// <summary>Random operations against a reference byte array: overlaps, unaligned offsets, trims, zeroes, reopen, crash and GC.</summary>
public sealed class RafVolumeModelTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public async Task RandomOperationsMatchReferenceModel(int seed)
    {
        const int size = 512 << 10;
        var harness = new RafHarness(output, size);
        var model = new byte[size];
        var random = new Random(seed);
        var volume = await harness.OpenAsync();
        try
        {
            for (var step = 0; step < 400; step++)
            {
                // A burst of operations submitted without waiting: the engine applies them in submission order.
                var pending = new List<Task>();
                var burst = random.Next(1, 8);
                for (var i = 0; i < burst; i++)
                {
                    var offset = random.Next(size);
                    var length = Math.Min(size - offset, random.Next(1, random.Next(2) == 0 ? 600 : 40_000));
                    switch (random.Next(10))
                    {
                        case < 6:
                            var data = RafHarness.Pattern(length, random.Next());
                            data.CopyTo(model, offset);
                            pending.Add(volume.WriteAsync(offset, data, fua: random.Next(8) == 0).AsTask());
                            break;
                        case < 8:
                            Array.Clear(model, offset, length);
                            pending.Add(volume.TrimAsync(offset, length).AsTask());
                            break;
                        default:
                            Array.Clear(model, offset, length);
                            pending.Add(volume.WriteZeroesAsync(offset, length, fua: false).AsTask());
                            break;
                    }
                }
                await Task.WhenAll(pending);

                var readOffset = random.Next(size);
                var readLength = Math.Min(size - readOffset, random.Next(1, 70_000));
                var read = new byte[readLength];
                await volume.ReadAsync(readOffset, read);
                RafHarness.AssertSameBytes(model.AsSpan(readOffset, readLength).ToArray(), read, $"step {step} read at {readOffset}");

                switch (random.Next(40))
                {
                    case 0:
                        await volume.DisposeAsync();
                        volume = await harness.OpenAsync();
                        break;
                    case 1:
                        await volume.CrashForTestAsync();
                        volume = await harness.OpenAsync();
                        break;
                    case 2:
                        await volume.RunGcOnceAsync();
                        break;
                    case 3:
                        await volume.FlushAsync();
                        break;
                }
            }
            RafHarness.AssertSameBytes(model, await RafHarness.ReadAllAsync(volume), "final contents");
            await volume.RunGcOnceAsync();
            RafHarness.AssertSameBytes(model, await RafHarness.ReadAllAsync(volume), "after GC");
            await volume.CrashForTestAsync();
            volume = await harness.OpenAsync();
            RafHarness.AssertSameBytes(model, await RafHarness.ReadAllAsync(volume), "after crash and recovery");
            output.WriteLine($"log bytes {volume.GetStats().LogBytes}, extents {volume.GetStats().Extents}");
        }
        finally
        {
            await volume.DisposeAsync();
        }
    }
}
