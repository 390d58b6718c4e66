using System.Buffers.Binary;
using System.Text;
using FeitianK8s.Core.Block;
using FeitianK8s.Core.Nbd;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>Option haggling byte by byte: what the server advertises and answers for each option.</summary>
public sealed class NbdHandshakeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Greeting_info_list_and_go_follow_the_fixed_newstyle_rules()
    {
        var disk = new MemoryBlockDevice("disk", 3L << 20, supportsMultiConnection: false);
        await using var host = await NbdTestHost.StartAsync(output, [disk, new MemoryBlockDevice("other", 4096)]);
        await using var client = await RawNbdClient.ConnectAsync(host.Port);

        Assert.Equal(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes, await client.ReadGreetingAsync());
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);

        await client.SendOptionAsync((uint)NbdOption.List, []);
        var names = new List<string>();
        OptionReply reply;
        while ((reply = await client.ReadOptionReplyAsync()).Type == NbdOptionReply.Server)
            names.Add(Encoding.UTF8.GetString(reply.Data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(reply.Data)));
        Assert.Equal(NbdOptionReply.Ack, reply.Type);
        Assert.Equal(["disk", "other"], names);

        // INFO describes without entering transmission; haggling continues.
        var info = await client.GoAsync("disk", NbdOption.Info);
        Assert.Equal(NbdOptionReply.Ack, info[^1].Type);
        Assert.Equal(3ul << 20, client.ExportSize);
        Assert.Equal(NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
            | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes, client.Flags);
        var name = info.Single(r => r.Type == NbdOptionReply.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == (ushort)NbdInfoType.Name);
        Assert.Equal("disk", Encoding.UTF8.GetString(name.Data, 2, name.Data.Length - 2));
        var blockSize = info.Single(r => r.Type == NbdOptionReply.Info && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == (ushort)NbdInfoType.BlockSize);
        Assert.Equal((1u, 4096u, 32u << 20), (
            BinaryPrimitives.ReadUInt32BigEndian(blockSize.Data.AsSpan(2)),
            BinaryPrimitives.ReadUInt32BigEndian(blockSize.Data.AsSpan(6)),
            BinaryPrimitives.ReadUInt32BigEndian(blockSize.Data.AsSpan(10))));

        await client.SendOptionAsync((uint)NbdOption.StartTls, []);
        Assert.Equal(NbdOptionReply.ErrUnsup, (await client.ReadOptionReplyAsync()).Type);

        Assert.Equal(NbdOptionReply.Ack, (await client.GoAsync("disk"))[^1].Type);
        Assert.Equal(NbdError.None, (await client.RequestAsync(NbdCommand.Read, 1, 0, 512)).Error);
    }

    [Fact]
    public async Task Abort_is_acknowledged_and_the_connection_closed()
    {
        await using var host = await NbdTestHost.StartAsync(output, [new MemoryBlockDevice("disk", 4096)]);
        await using var client = await RawNbdClient.ConnectAsync(host.Port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        await client.SendOptionAsync((uint)NbdOption.Abort, []);
        var reply = await client.ReadOptionReplyAsync();
        Assert.Equal(((uint)NbdOption.Abort, NbdOptionReply.Ack), (reply.Option, reply.Type));
        Assert.True(await client.IsClosedByServerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task The_empty_name_selects_the_configured_default_export()
    {
        var disk = new MemoryBlockDevice("disk", 1 << 20);
        await using var host = await NbdTestHost.StartAsync(output, [disk], o => o.DefaultExportName = "disk");
        await using var client = await RawNbdClient.OpenAsync(host.Port, "");
        Assert.Equal(1ul << 20, client.ExportSize);

        await using var withoutDefault = await NbdTestHost.StartAsync(output, [disk]);
        await using var refused = await RawNbdClient.ConnectAsync(withoutDefault.Port);
        await refused.ReadGreetingAsync();
        await refused.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        Assert.Equal(NbdOptionReply.ErrUnknown, (await refused.GoAsync(""))[^1].Type);
    }
}
