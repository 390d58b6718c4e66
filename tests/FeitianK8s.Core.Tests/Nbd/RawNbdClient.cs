using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FeitianK8s.Core.Nbd;

namespace FeitianK8s.Core.Tests.Nbd;

public sealed record OptionReply(uint Option, NbdOptionReply Type, byte[] Data);

public sealed record SimpleReply(NbdError Error, ulong Handle, byte[] Data);

/// <summary>
/// A minimal NBD client speaking raw bytes, to send what real clients never send (bad magic,
/// truncated messages, pipelined requests) and to read the server's exact answers.
/// </summary>
internal sealed class RawNbdClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly Dictionary<ulong, int> _expectedReadLengths = [];

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public ulong ExportSize { get; private set; }
    public NbdTransmissionFlags Flags { get; private set; }

    public static async Task<RawNbdClient> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return new RawNbdClient(socket);
    }

    public static async Task<RawNbdClient> ConnectUnixAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawNbdClient(socket);
    }

    /// <summary>Connects and negotiates an export with NBD_OPT_GO.</summary>
    public static async Task<RawNbdClient> OpenAsync(int port, string export)
    {
        var client = await ConnectAsync(port);
        await client.ReadGreetingAsync();
        await client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);
        var replies = await client.GoAsync(export);
        Assert.Equal(NbdOptionReply.Ack, replies[^1].Type);
        return client;
    }

    public async Task<NbdHandshakeFlags> ReadGreetingAsync()
    {
        byte[] greeting = await ReadExactlyAsync(18);
        Assert.Equal(NbdProtocol.InitPasswd, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdProtocol.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        return (NbdHandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public Task SendClientFlagsAsync(NbdClientFlags flags)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)flags);
        return WriteRawAsync(bytes);
    }

    public Task SendOptionAsync(uint option, ReadOnlySpan<byte> data)
    {
        var message = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, NbdProtocol.IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), (uint)data.Length);
        data.CopyTo(message.AsSpan(16));
        return WriteRawAsync(message);
    }

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        byte[] header = await ReadExactlyAsync(20);
        Assert.Equal(NbdProtocol.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(header));
        uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        var type = (NbdOptionReply)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        Assert.True(length < 1 << 20, $"option reply length {length}");
        return new OptionReply(option, type, await ReadExactlyAsync((int)length));
    }

    public static byte[] InfoRequest(string export, params NbdInfoType[] infos)
    {
        byte[] name = Encoding.UTF8.GetBytes(export);
        var data = new byte[4 + name.Length + 2 + 2 * infos.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + name.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++)
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + name.Length + 2 * i), (ushort)infos[i]);
        return data;
    }

    /// <summary>Sends GO (or INFO) and collects replies up to the final ACK or error.</summary>
    public async Task<List<OptionReply>> GoAsync(string export, NbdOption option = NbdOption.Go)
    {
        await SendOptionAsync((uint)option, InfoRequest(export, NbdInfoType.Name, NbdInfoType.BlockSize));
        var replies = new List<OptionReply>();
        while (true)
        {
            var reply = await ReadOptionReplyAsync();
            replies.Add(reply);
            if (reply.Type == NbdOptionReply.Info && reply.Data.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(reply.Data) == (ushort)NbdInfoType.Export)
            {
                ExportSize = BinaryPrimitives.ReadUInt64BigEndian(reply.Data.AsSpan(2));
                Flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.Data.AsSpan(10));
            }
            if (reply.Type != NbdOptionReply.Info)
                return replies;
        }
    }

    public Task SendRequestAsync(NbdCommand command, ulong handle, ulong offset, uint length, ReadOnlySpan<byte> payload = default, NbdCommandFlags flags = NbdCommandFlags.None, uint magic = NbdProtocol.RequestMagic) =>
        WriteRawAsync(EncodeRequest(command, handle, offset, length, payload, flags, magic));

    /// <summary>Sends payload-less requests (reads, flushes) in one socket write, so the server finds them all buffered at once.</summary>
    public Task SendRequestsTogetherAsync(IEnumerable<(NbdCommand Command, ulong Handle, ulong Offset, uint Length)> requests) =>
        WriteRawAsync(requests.SelectMany(r => EncodeRequest(r.Command, r.Handle, r.Offset, r.Length, default, NbdCommandFlags.None, NbdProtocol.RequestMagic)).ToArray());

    private byte[] EncodeRequest(NbdCommand command, ulong handle, ulong offset, uint length, ReadOnlySpan<byte> payload, NbdCommandFlags flags, uint magic)
    {
        var message = new byte[NbdProtocol.RequestHeaderLength + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(message, magic);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(4), (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(6), (ushort)command);
        BinaryPrimitives.WriteUInt64BigEndian(message.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(message.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(24), length);
        payload.CopyTo(message.AsSpan(NbdProtocol.RequestHeaderLength));
        if (command == NbdCommand.Read)
            _expectedReadLengths[handle] = (int)length;
        return message;
    }

    /// <summary>Reads one simple reply; a successful READ's payload length is known from its request.</summary>
    public async Task<SimpleReply> ReadReplyAsync()
    {
        byte[] header = await ReadExactlyAsync(NbdProtocol.SimpleReplyHeaderLength);
        Assert.Equal(NbdProtocol.SimpleReplyMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
        var error = (NbdError)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        ulong handle = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
        byte[] data = [];
        if (_expectedReadLengths.Remove(handle, out int length) && error == NbdError.None)
            data = await ReadExactlyAsync(length);
        return new SimpleReply(error, handle, data);
    }

    public async Task<SimpleReply> RequestAsync(NbdCommand command, ulong handle, ulong offset, uint length, ReadOnlyMemory<byte> payload = default, NbdCommandFlags flags = NbdCommandFlags.None)
    {
        await SendRequestAsync(command, handle, offset, length, payload.Span, flags);
        var reply = await ReadReplyAsync();
        Assert.Equal(handle, reply.Handle);
        return reply;
    }

    public async Task WriteRawAsync(ReadOnlyMemory<byte> bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    public async Task<byte[]> ReadExactlyAsync(int count)
    {
        var buffer = new byte[count];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _stream.ReadExactlyAsync(buffer, timeout.Token);
        return buffer;
    }

    /// <summary>
    /// Reads exactly <paramref name="count"/> bytes unless the server stays silent for
    /// <paramref name="wait"/> or hangs up first: then Data is null and Ended tells which. A
    /// message cut off in the middle fails the test.
    /// </summary>
    public async Task<(byte[]? Data, bool Ended)> ReadWithinAsync(int count, TimeSpan wait)
    {
        var buffer = new byte[count];
        int filled = 0;
        bool ended = false;
        using var timeout = new CancellationTokenSource(wait);
        try
        {
            while (filled < count)
            {
                int n = await _stream.ReadAsync(buffer.AsMemory(filled), timeout.Token);
                if (n == 0)
                {
                    ended = true;
                    break;
                }
                filled += n;
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (IOException)
        {
            ended = true;
        }
        if (filled == count)
            return (buffer, false);
        Assert.True(filled == 0, $"the server sent {filled} of a {count}-byte message, then {(ended ? "hung up" : "went silent")}");
        return (null, ended);
    }

    /// <summary>True when the server closed the connection (end of stream or reset) within the timeout, after any pending bytes.</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buffer, cts.Token);
                if (n == 0)
                    return true;
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}
