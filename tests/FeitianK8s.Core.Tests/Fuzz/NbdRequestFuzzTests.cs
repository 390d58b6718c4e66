using CsCheck;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using FeitianK8s.Core.Tests.Nbd;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Fuzz;

/// <summary>
/// Random transmission-phase requests against a real <see cref="NbdServer"/>: commands known and
/// unknown, every flag bit, offsets and lengths at and far beyond the edges, writes with their
/// payload. Each reply must carry the error the NBD spec names for that request (an independent
/// model below), a refused request must change nothing, and the device must always equal a shadow
/// copy built from the acknowledged requests only. Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class NbdRequestFuzzTests(ITestOutputHelper output)
{
    private const long Size = 1 << 20;
    private const uint MaxPayload = 128 * 1024;
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);

    private sealed record FuzzRequest(ushort Command, ushort Flags, ulong Offset, uint Length, int PayloadSeed)
    {
        public NbdCommand Kind => (NbdCommand)Command;
        public override string ToString() => $"{Kind}(flags 0x{Flags:x}, offset {Offset}, length {Length})";
    }

    private static readonly Gen<ushort> Commands = Gen.Frequency(
        (8, Gen.OneOf((ushort)NbdCommand.Read, (ushort)NbdCommand.Write, (ushort)NbdCommand.Flush, (ushort)NbdCommand.Trim, (ushort)NbdCommand.WriteZeroes)),
        (1, Gen.OneOf((ushort)NbdCommand.Cache, (ushort)NbdCommand.BlockStatus, (ushort)NbdCommand.Disconnect, (ushort)9, (ushort)42)),
        (1, Gen.UShort));

    private static readonly Gen<ushort> Flags = Gen.Frequency(
        (6, Gen.Const((ushort)0)),
        (3, Gen.OneOf((ushort)NbdCommandFlags.Fua, (ushort)NbdCommandFlags.NoHole, (ushort)NbdCommandFlags.Df, (ushort)NbdCommandFlags.FastZero)),
        (1, Gen.UShort));

    private static readonly Gen<ulong> Offsets = Gen.Frequency(
        (6, Gen.ULong[0, Size]),
        (2, Gen.ULong[Size - 8192, Size + 8192]),
        (1, Gen.ULong[ulong.MaxValue - 65536, ulong.MaxValue]),
        (1, Gen.ULong));

    private static readonly Gen<uint> Lengths = Gen.Frequency(
        (6, Gen.UInt[0, 16384]),
        (2, Gen.UInt[MaxPayload - 16, MaxPayload + 16]),
        (1, Gen.UInt[(uint)Size - 16, (uint)Size + 16]),
        (1, Gen.UInt));

    private static readonly Gen<FuzzRequest> Requests =
        Gen.Select(Commands, Flags, Offsets, Lengths, Gen.Int, (c, f, o, l, s) => new FuzzRequest(c, f, o, l, s));

    /// <summary>The spec's answer to a request on a writable export of <see cref="Size"/> bytes.</summary>
    private static NbdError ExpectedError(FuzzRequest request)
    {
        var flags = (NbdCommandFlags)request.Flags;
        NbdCommandFlags allowed = request.Kind switch
        {
            NbdCommand.WriteZeroes => NbdCommandFlags.Fua | NbdCommandFlags.NoHole,
            NbdCommand.Read or NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim => NbdCommandFlags.Fua,
            _ => NbdCommandFlags.None,
        };
        if (request.Kind is not (NbdCommand.Read or NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim or NbdCommand.WriteZeroes))
            return NbdError.Inval;
        if ((flags & ~allowed) != 0)
            return NbdError.Inval;
        if (request.Kind == NbdCommand.Flush)
            return request.Offset == 0 && request.Length == 0 ? NbdError.None : NbdError.Inval;
        if (request.Kind is NbdCommand.Read or NbdCommand.Write && request.Length > MaxPayload)
            return NbdError.Inval;
        bool inRange = request.Offset <= Size && request.Length <= Size - request.Offset;
        if (inRange)
            return NbdError.None;
        return request.Kind is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpc : NbdError.Inval;
    }

    [Fact]
    public async Task Random_requests_get_the_spec_error_and_only_acknowledged_writes_change_the_device()
    {
        var disk = new MemoryBlockDevice("disk", Size);
        var shadow = new byte[Size];
        await using var host = await NbdTestHost.StartAsync(output, [disk], o => o.MaximumPayloadSize = MaxPayload);
        var outcomes = new Dictionary<string, int>();
        int samples = 0;

        await Requests.Array[1, 40].SampleAsync(async requests =>
        {
            samples++;
            await RunSessionAsync(host.Port, requests, shadow, outcomes);
            var onDisk = new byte[Size];
            await disk.ReadAsync(0, onDisk);
            Assert.True(onDisk.AsSpan().SequenceEqual(shadow), "the device differs from the acknowledged writes after: " + string.Join(", ", requests.Select(r => r.ToString())));
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 1, writeLine: output.WriteLine);

        output.WriteLine($"{samples} sessions; outcomes: {string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}"))}");
        Assert.True(outcomes.GetValueOrDefault("Write None") > 0, "the fuzzer reached acknowledged writes");
        Assert.True(outcomes.Keys.Count(k => !k.EndsWith(" None", StringComparison.Ordinal)) >= 3, "the fuzzer reached several kinds of refusal");
        await ExpectNoSessionLeftAsync(host.Server);

        // A well-behaved client is still served and reads what the acknowledged writes left.
        await using var healthy = await RawNbdClient.OpenAsync(host.Port, "disk");
        var read = await healthy.RequestAsync(NbdCommand.Read, 1, 0, 4096);
        Assert.Equal(NbdError.None, read.Error);
        Assert.Equal(shadow.AsSpan(0, 4096).ToArray(), read.Data);
    }

    private static async Task RunSessionAsync(int port, FuzzRequest[] requests, byte[] shadow, Dictionary<string, int> outcomes)
    {
        var client = await RawNbdClient.OpenAsync(port, "disk");
        try
        {
            ulong handle = 0;
            foreach (var request in requests)
            {
                handle++;
                NbdError expected = ExpectedError(request);
                if (request.Kind == NbdCommand.Disconnect)
                {
                    await client.SendRequestAsync(request.Kind, handle, request.Offset, request.Length, flags: (NbdCommandFlags)request.Flags);
                    Assert.True(await client.IsClosedByServerAsync(CloseTimeout), "NBD_CMD_DISC closes the connection");
                    Count(outcomes, "Disconnect closed");
                    await client.DisposeAsync();
                    client = await RawNbdClient.OpenAsync(port, "disk");
                    continue;
                }
                if (request.Kind == NbdCommand.Write && request.Length > MaxPayload)
                {
                    // The server cannot skip a payload it will not buffer: EINVAL, then it hangs up.
                    await client.SendRequestAsync(request.Kind, handle, request.Offset, request.Length, flags: (NbdCommandFlags)request.Flags);
                    var refused = await client.ReadReplyAsync();
                    Assert.Equal((NbdError.Inval, handle), (refused.Error, refused.Handle));
                    Assert.True(await client.IsClosedByServerAsync(CloseTimeout), $"{request} closes the connection");
                    Count(outcomes, "Write oversize closed");
                    await client.DisposeAsync();
                    client = await RawNbdClient.OpenAsync(port, "disk");
                    continue;
                }

                byte[] payload = request.Kind == NbdCommand.Write ? PayloadOf(request) : [];
                var reply = await client.RequestAsync(request.Kind, handle, request.Offset, request.Length, payload, (NbdCommandFlags)request.Flags);
                Assert.True(expected == reply.Error, $"{request}: expected {expected}, got {reply.Error}");
                Count(outcomes, $"{(Enum.IsDefined(request.Kind) ? request.Kind : "Unknown")} {reply.Error}");
                if (reply.Error != NbdError.None)
                    continue;
                switch (request.Kind)
                {
                    case NbdCommand.Write:
                        payload.CopyTo(shadow, (long)request.Offset);
                        break;
                    case NbdCommand.Trim or NbdCommand.WriteZeroes:
                        Array.Clear(shadow, (int)request.Offset, (int)request.Length);
                        break;
                    case NbdCommand.Read:
                        Assert.True(reply.Data.AsSpan().SequenceEqual(shadow.AsSpan((int)request.Offset, (int)request.Length)), $"{request} read what was not written");
                        break;
                }
            }
        }
        finally
        {
            await client.DisposeAsync();
        }
    }

    private static byte[] PayloadOf(FuzzRequest request)
    {
        var payload = new byte[request.Length];
        new Random(request.PayloadSeed).NextBytes(payload);
        return payload;
    }

    private static void Count(Dictionary<string, int> outcomes, string key) => outcomes[key] = outcomes.GetValueOrDefault(key) + 1;

    private static async Task ExpectNoSessionLeftAsync(NbdServer server)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (server.ActiveConnections > 0 && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.True(server.ActiveConnections == 0, $"{server.ActiveConnections} sessions still open after every fuzz client left");
    }
}
