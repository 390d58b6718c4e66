using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using FeitianK8s.Core.Block;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>The export a client chose, with the transmission flags it was promised.</summary>
public sealed record NbdExport(IBlockDevice Device, NbdTransmissionFlags Flags);

/// <summary>
/// Fixed-newstyle handshake and option haggling for one connection. Returns the chosen export,
/// or null when the client aborted. A violation of a MUST throws <see cref="NbdProtocolException"/>.
/// </summary>
internal sealed class NbdHandshake(PipeReader reader, Stream output, IBlockDeviceProvider exports, NbdServerOptions options, ILogger logger)
{
    private const NbdClientFlags KnownClientFlags = NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes;

    public static NbdTransmissionFlags TransmissionFlagsFor(IBlockDevice device)
    {
        var flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush;
        if (device.ReadOnly)
            flags |= NbdTransmissionFlags.ReadOnly;
        else
            flags |= NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes;
        if (device.SupportsMultiConnection)
            flags |= NbdTransmissionFlags.CanMultiConn;
        return flags;
    }

    public async Task<NbdExport?> NegotiateAsync(CancellationToken ct)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdProtocol.InitPasswd);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), (ushort)(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes));
        await output.WriteAsync(greeting, ct).ConfigureAwait(false);

        var clientFlagBytes = new byte[4];
        if (!await NbdPipe.ReadExactlyAsync(reader, clientFlagBytes, "client flags", ct).ConfigureAwait(false))
            throw new NbdProtocolException("connection closed before the client flags");
        var clientFlags = (NbdClientFlags)BinaryPrimitives.ReadUInt32BigEndian(clientFlagBytes);
        if ((clientFlags & ~KnownClientFlags) != 0)
            throw new NbdProtocolException($"unknown client flags 0x{(uint)clientFlags:x8}");
        bool noZeroes = clientFlags.HasFlag(NbdClientFlags.NoZeroes);

        var header = new byte[NbdProtocol.OptionHeaderLength];
        while (true)
        {
            if (!await NbdPipe.ReadExactlyAsync(reader, header, "option header", ct).ConfigureAwait(false))
                throw new NbdProtocolException("connection closed during option haggling");
            ulong magic = BinaryPrimitives.ReadUInt64BigEndian(header);
            if (magic != NbdProtocol.IHaveOpt)
                throw new NbdProtocolException($"bad option magic 0x{magic:x16}");
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (length > options.MaximumOptionLength)
                throw new NbdProtocolException($"option {option} carries {length} bytes, more than the {options.MaximumOptionLength} accepted");
            var data = new byte[length];
            await NbdPipe.ReadExactlyAsync(reader, data, $"option {option} data", ct).ConfigureAwait(false);
            logger.LogDebug("NBD option {Option} ({Length} bytes)", (NbdOption)option, length);

            switch ((NbdOption)option)
            {
                case NbdOption.ExportName:
                    return await ExportNameAsync(data, noZeroes, ct).ConfigureAwait(false);
                case NbdOption.Abort:
                    await ReplyAsync(option, NbdOptionReply.Ack, default, ct).ConfigureAwait(false);
                    return null;
                case NbdOption.List:
                    await ListAsync(option, data, ct).ConfigureAwait(false);
                    break;
                case NbdOption.Info:
                case NbdOption.Go:
                    NbdExport? chosen = await InfoOrGoAsync(option, data, ct).ConfigureAwait(false);
                    if (chosen is not null && (NbdOption)option == NbdOption.Go)
                        return chosen;
                    break;
                default:
                    // STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers and anything unknown:
                    // this server speaks plain, simple replies only.
                    await ReplyAsync(option, NbdOptionReply.ErrUnsup, Message($"option {option} is not supported"), ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    private async Task<NbdExport> ExportNameAsync(byte[] data, bool noZeroes, CancellationToken ct)
    {
        // EXPORT_NAME cannot carry an error: an unusable name ends the session.
        string name = DecodeName(data) ?? throw new NbdProtocolException("export name is not valid UTF-8 or too long");
        IBlockDevice device = await OpenAsync(name, ct).ConfigureAwait(false)
            ?? throw new NbdProtocolException($"unknown export '{name}' requested with NBD_OPT_EXPORT_NAME");
        var flags = TransmissionFlagsFor(device);
        var reply = new byte[noZeroes ? 10 : 10 + 124];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)device.Size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)flags);
        await output.WriteAsync(reply, ct).ConfigureAwait(false);
        return new NbdExport(device, flags);
    }

    private async Task ListAsync(uint option, byte[] data, CancellationToken ct)
    {
        if (data.Length != 0)
        {
            await ReplyAsync(option, NbdOptionReply.ErrInvalid, Message("NBD_OPT_LIST takes no data"), ct).ConfigureAwait(false);
            return;
        }
        foreach (string name in await exports.ListAsync(ct).ConfigureAwait(false))
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            var entry = new byte[4 + nameBytes.Length];
            BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)nameBytes.Length);
            nameBytes.CopyTo(entry, 4);
            await ReplyAsync(option, NbdOptionReply.Server, entry, ct).ConfigureAwait(false);
        }
        await ReplyAsync(option, NbdOptionReply.Ack, default, ct).ConfigureAwait(false);
    }

    /// <summary>INFO and GO share a body: 32-bit name length, name, 16-bit count, count x 16-bit info requests.</summary>
    private async Task<NbdExport?> InfoOrGoAsync(uint option, byte[] data, CancellationToken ct)
    {
        if (!TryParseInfoRequest(data, out string? name, out List<NbdInfoType> requested))
        {
            await ReplyAsync(option, NbdOptionReply.ErrInvalid, Message("malformed NBD_OPT_INFO/GO data"), ct).ConfigureAwait(false);
            return null;
        }
        IBlockDevice? device = await OpenAsync(name, ct).ConfigureAwait(false);
        if (device is null)
        {
            logger.LogInformation("NBD client asked for unknown export {Export}", name);
            await ReplyAsync(option, NbdOptionReply.ErrUnknown, Message($"unknown export '{name}'"), ct).ConfigureAwait(false);
            return null;
        }

        var flags = TransmissionFlagsFor(device);
        var export = new byte[2 + 8 + 2];
        BinaryPrimitives.WriteUInt16BigEndian(export, (ushort)NbdInfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), (ulong)device.Size);
        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), (ushort)flags);
        await ReplyAsync(option, NbdOptionReply.Info, export, ct).ConfigureAwait(false);

        if (requested.Contains(NbdInfoType.Name))
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(device.Name);
            var info = new byte[2 + nameBytes.Length];
            BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)NbdInfoType.Name);
            nameBytes.CopyTo(info, 2);
            await ReplyAsync(option, NbdOptionReply.Info, info, ct).ConfigureAwait(false);
        }

        // Sent whether or not it was requested (the spec allows that); with a minimum of 1 no client is refused.
        var blockSize = new byte[2 + 12];
        BinaryPrimitives.WriteUInt16BigEndian(blockSize, (ushort)NbdInfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(2), options.MinimumBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(6), options.PreferredBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(blockSize.AsSpan(10), options.MaximumPayloadSize);
        await ReplyAsync(option, NbdOptionReply.Info, blockSize, ct).ConfigureAwait(false);

        await ReplyAsync(option, NbdOptionReply.Ack, default, ct).ConfigureAwait(false);
        return new NbdExport(device, flags);
    }

    internal static bool TryParseInfoRequest(ReadOnlySpan<byte> data, out string name, out List<NbdInfoType> requested)
    {
        name = "";
        requested = [];
        if (data.Length < 6)
            return false;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > NbdProtocol.MaxStringLength || 4 + nameLength + 2 > data.Length)
            return false;
        string? decoded = DecodeName(data.Slice(4, (int)nameLength));
        if (decoded is null)
            return false;
        var rest = data[(4 + (int)nameLength)..];
        int count = BinaryPrimitives.ReadUInt16BigEndian(rest);
        if (rest.Length != 2 + 2 * count)
            return false;
        for (int i = 0; i < count; i++)
            requested.Add((NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(rest[(2 + 2 * i)..]));
        name = decoded;
        return true;
    }

    private static string? DecodeName(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > NbdProtocol.MaxStringLength || bytes.Contains((byte)0))
            return null;
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private ValueTask<IBlockDevice?> OpenAsync(string name, CancellationToken ct)
    {
        if (name.Length == 0)
        {
            if (options.DefaultExportName is null)
                return ValueTask.FromResult<IBlockDevice?>(null);
            name = options.DefaultExportName;
        }
        return exports.OpenAsync(name, ct);
    }

    private static byte[] Message(string text) => Encoding.UTF8.GetBytes(text);

    private async ValueTask ReplyAsync(uint option, NbdOptionReply type, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NbdProtocol.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.Span.CopyTo(reply.AsSpan(20));
        await output.WriteAsync(reply, ct).ConfigureAwait(false);
    }
}
