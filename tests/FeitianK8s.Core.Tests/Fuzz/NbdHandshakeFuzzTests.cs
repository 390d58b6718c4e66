using System.Buffers.Binary;
using System.Text;
using CsCheck;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;
using FeitianK8s.Core.Tests.Nbd;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Fuzz;

/// <summary>
/// Random handshakes against a real <see cref="NbdServer"/>: client flags with every bit, options
/// known and unknown, option data that is well formed, truncated, oversized or random, and length
/// fields that lie. Every answer must be a well-formed option reply for the option just sent (or a
/// closed connection), no handshake may touch the device, no session may be left behind, and a
/// well-behaved client must be served afterwards. Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class NbdHandshakeFuzzTests(ITestOutputHelper output)
{
    private const long Size = 1 << 20;
    /// <summary>How long a reply may take before the server is taken to wait for more bytes (a lying length).</summary>
    private static readonly TimeSpan ReplyWait = TimeSpan.FromMilliseconds(300);

    private sealed record FuzzOption(uint Code, byte[] Data, int LengthLie)
    {
        public override string ToString() => $"option {Code} ({Data.Length} bytes, length field {Data.Length + LengthLie})";
    }

    private sealed record FuzzHandshake(uint ClientFlags, FuzzOption[] Options)
    {
        public override string ToString() => $"flags 0x{ClientFlags:x}: {string.Join(", ", Options.Select(o => o.ToString()))}";
    }

    private static readonly Gen<string> ExportNames = Gen.Frequency(
        (3, Gen.Const("disk")),
        (2, Gen.String[Gen.Char.AlphaNumeric, 0, 12]),
        (1, Gen.String[Gen.Char, 0, 64]));

    private static readonly Gen<byte[]> InfoRequests = Gen.Select(ExportNames, Gen.UShort[0, 5].Array[0, 6], Gen.Int[-3, 3],
        (name, infos, countLie) =>
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            var data = new byte[4 + nameBytes.Length + 2 + 2 * infos.Length];
            BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
            nameBytes.CopyTo(data, 4);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + nameBytes.Length), (ushort)(infos.Length + countLie));
            for (int i = 0; i < infos.Length; i++)
                BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + nameBytes.Length + 2 * i), infos[i]);
            return data;
        });

    private static readonly Gen<uint> OptionCodes = Gen.Frequency(
        (6, Gen.OneOf((uint)NbdOption.Info, (uint)NbdOption.List, (uint)NbdOption.StructuredReply, (uint)NbdOption.ListMetaContext,
            (uint)NbdOption.SetMetaContext, (uint)NbdOption.StartTls, (uint)NbdOption.ExtendedHeaders, (uint)NbdOption.PeekExport)),
        (2, Gen.OneOf((uint)NbdOption.Go, (uint)NbdOption.ExportName, (uint)NbdOption.Abort)),
        (1, Gen.UInt));

    private static readonly Gen<FuzzOption> Options = Gen.Select(
        OptionCodes,
        Gen.Frequency((3, InfoRequests), (2, Gen.Byte.Array[0, 64]), (1, Gen.Byte.Array[0, 5000])),
        Gen.Frequency((8, Gen.Const(0)), (1, Gen.Int[-8, 8]), (1, Gen.Int[int.MinValue, int.MaxValue])),
        (code, data, lie) => new FuzzOption(code, data, lie));

    private static readonly Gen<FuzzHandshake> Handshakes = Gen.Select(
        Gen.Frequency((6, Gen.OneOf(1u, 3u)), (1, Gen.UInt)),
        Options.Array[0, 6],
        (flags, options) => new FuzzHandshake(flags, options));

    [Fact]
    public async Task Random_handshakes_get_well_formed_answers_or_a_closed_connection_and_touch_nothing()
    {
        var disk = new MemoryBlockDevice("disk", Size);
        await using var host = await NbdTestHost.StartAsync(output, [disk], o => o.HandshakeTimeout = TimeSpan.FromSeconds(5));
        var outcomes = new Dictionary<string, int>();

        await Handshakes.SampleAsync(async handshake =>
        {
            string outcome = await RunHandshakeAsync(host.Port, handshake);
            lock (outcomes)
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 2, writeLine: output.WriteLine);

        output.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}")));
        Assert.True(outcomes.Count >= 3, "the fuzzer reached several handshake outcomes");
        Assert.Equal(0, disk.AllocatedChunks);

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (host.Server.ActiveConnections > 0 && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.True(host.Server.ActiveConnections == 0, $"{host.Server.ActiveConnections} sessions still open after every fuzz client left");

        await using var healthy = await RawNbdClient.OpenAsync(host.Port, "disk");
        Assert.Equal(NbdError.None, (await healthy.RequestAsync(NbdCommand.Read, 1, 0, 4096)).Error);
    }

    /// <summary>Plays one handshake, checking each answer; returns a short name of how it ended.</summary>
    private static async Task<string> RunHandshakeAsync(int port, FuzzHandshake handshake)
    {
        await using var client = await RawNbdClient.ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync((NbdClientFlags)handshake.ClientFlags);
        if ((handshake.ClientFlags & ~3u) != 0)
        {
            Assert.True(await client.IsClosedByServerAsync(TimeSpan.FromSeconds(10)), $"unknown client flags 0x{handshake.ClientFlags:x} close the connection");
            return "bad client flags: closed";
        }
        foreach (var option in handshake.Options)
        {
            await SendOptionAsync(client, option);
            var answer = await ReadAnswerAsync(client, option);
            if (answer != "reply")
                return $"{Describe(option.Code)}: {answer}";
        }
        return "all options answered";
    }

    private static async Task SendOptionAsync(RawNbdClient client, FuzzOption option)
    {
        var message = new byte[16 + option.Data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option.Code);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), (uint)(option.Data.Length + option.LengthLie));
        option.Data.CopyTo(message, 16);
        try
        {
            await client.WriteRawAsync(message);
        }
        catch (IOException)
        {
            // the server may hang up before reading everything: the answer check below sees the close
        }
    }

    /// <summary>
    /// Reads the server's answer to one option: replies up to the final one, each with the reply
    /// magic and this option's code; or the export data after EXPORT_NAME; or a close; or silence
    /// while the server waits for the bytes a lying length promised.
    /// </summary>
    private static async Task<string> ReadAnswerAsync(RawNbdClient client, FuzzOption option)
    {
        while (true)
        {
            var (header, ended) = await client.ReadWithinAsync(option.Code == (uint)NbdOption.ExportName ? 10 : 20, ReplyWait);
            if (header is null)
                return ended ? "closed" : "waiting for more bytes";
            if (option.Code == (uint)NbdOption.ExportName)
            {
                Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(header));
                return "export opened";
            }
            Assert.Equal(NbdProtocol.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
            Assert.Equal(option.Code, BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)));
            var type = (NbdOptionReply)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            Assert.True(length <= 64 * 1024, $"reply of {length} bytes to {option}");
            if (length > 0)
                Assert.NotNull((await client.ReadWithinAsync((int)length, TimeSpan.FromSeconds(10))).Data);
            if (type is NbdOptionReply.Info or NbdOptionReply.Server or NbdOptionReply.MetaContext)
                continue;
            if (type == NbdOptionReply.Ack && option.Code == (uint)NbdOption.Go)
                return "export opened";
            if (type == NbdOptionReply.Ack && option.Code == (uint)NbdOption.Abort)
                return "aborted";
            return "reply";
        }
    }

    private static string Describe(uint code) => Enum.IsDefined((NbdOption)code) ? ((NbdOption)code).ToString() : "unknown option";
}
