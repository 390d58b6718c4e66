using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>An NBD simple reply: the error the server named (0 = success) and a READ's data.</summary>
public sealed record NbdReply(uint Error, byte[] Data);

/// <summary>
/// A small NBD client written from the protocol document, independent of the server's code:
/// fixed newstyle handshake with NBD_OPT_GO, then pipelined requests with replies matched by
/// handle, so a test knows exactly which requests the server acknowledged.
/// </summary>
public sealed class NbdWireClient : IAsyncDisposable
{
    public const ulong InitPasswd = 0x4e42444d41474943;
    public const ulong IHaveOpt = 0x49484156454F5054;
    public const ulong OptionReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6;
    public const ushort FlagFua = 1;
    private const uint OptGo = 7;
    private const uint ReplyAck = 1, ReplyInfo = 3;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<ulong, (TaskCompletionSource<NbdReply> Reply, int ReadLength)> _pending = new();
    private Task _receiver = Task.CompletedTask;
    private long _nextHandle;

    private NbdWireClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public ulong ExportSize { get; private set; }
    public ushort TransmissionFlags { get; private set; }

    public static async Task<NbdWireClient> OpenAsync(int port, string export)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        var client = new NbdWireClient(socket);
        try
        {
            await client.HandshakeAsync(export);
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
        client._receiver = Task.Run(client.ReceiveLoopAsync);
        return client;
    }

    public Task<NbdReply> WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua = false) =>
        SendAsync(CmdWrite, fua ? FlagFua : (ushort)0, offset, (uint)data.Length, data, 0);

    public Task<NbdReply> ReadAsync(long offset, int length) => SendAsync(CmdRead, 0, offset, (uint)length, default, length);

    public Task<NbdReply> FlushAsync() => SendAsync(CmdFlush, 0, 0, 0, default, 0);

    public Task<NbdReply> TrimAsync(long offset, uint length) => SendAsync(CmdTrim, 0, offset, length, default, 0);

    /// <summary>Reads and fails the test unless the server answers without error.</summary>
    public async Task<byte[]> ReadCheckedAsync(long offset, int length)
    {
        var reply = await ReadAsync(offset, length);
        Assert.True(reply.Error == 0, $"NBD read at {offset}+{length} failed with error {reply.Error}");
        return reply.Data;
    }

    public async Task WriteCheckedAsync(long offset, ReadOnlyMemory<byte> data, bool fua = false)
    {
        var reply = await WriteAsync(offset, data, fua);
        Assert.True(reply.Error == 0, $"NBD write at {offset}+{data.Length} failed with error {reply.Error}");
    }

    /// <summary>Sends bytes as they are, after the handshake: for malformed and truncated requests.</summary>
    public async Task SendRawAsync(ReadOnlyMemory<byte> bytes)
    {
        await _sendLock.WaitAsync();
        try
        {
            await _stream.WriteAsync(bytes);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Completes when the server has closed the connection (the receive loop ended).</summary>
    public Task Closed => _receiver;

    /// <summary>Why the receive loop ended: end of stream when the server closed without a word, another error for a bad or unexpected reply.</summary>
    public Exception? ReceiveFailure { get; private set; }

    /// <summary>
    /// Half-closes the connection: the server sees end of stream right after the bytes sent so far
    /// (nothing completes a truncated request, not even the disconnect <see cref="DisposeAsync"/> sends),
    /// while its replies can still arrive.
    /// </summary>
    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    private async Task HandshakeAsync(string export)
    {
        var greeting = await ReadExactlyAsync(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != InitPasswd || BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)) != IHaveOpt)
        {
            throw new IOException("not an NBD newstyle server");
        }
        var clientFlags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, 1 | 2); // FIXED_NEWSTYLE | NO_ZEROES
        await _stream.WriteAsync(clientFlags);

        var name = Encoding.UTF8.GetBytes(export);
        var option = new byte[16 + 4 + name.Length + 2];
        BinaryPrimitives.WriteUInt64BigEndian(option, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), OptGo);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)(4 + name.Length + 2));
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(16), (uint)name.Length);
        name.CopyTo(option, 20);
        await _stream.WriteAsync(option);

        while (true)
        {
            var header = await ReadExactlyAsync(20);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != OptionReplyMagic)
            {
                throw new IOException("bad option reply magic");
            }
            var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            var data = await ReadExactlyAsync((int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16)));
            if (type == ReplyInfo && data.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(data) == 0)
            {
                ExportSize = BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
            }
            else if (type == ReplyAck)
            {
                return;
            }
            else if ((type & 0x80000000) != 0)
            {
                throw new IOException($"NBD_OPT_GO for export '{export}' refused with reply type 0x{type:x8}: {Encoding.UTF8.GetString(data)}");
            }
        }
    }

    private async Task<NbdReply> SendAsync(ushort command, ushort flags, long offset, uint length, ReadOnlyMemory<byte> payload, int readLength)
    {
        var handle = (ulong)Interlocked.Increment(ref _nextHandle);
        var reply = new TaskCompletionSource<NbdReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[handle] = (reply, readLength);
        var header = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(header, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), command);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), length);
        await _sendLock.WaitAsync();
        try
        {
            await _stream.WriteAsync(header);
            if (!payload.IsEmpty)
            {
                await _stream.WriteAsync(payload);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            _pending.TryRemove(handle, out _);
            throw new IOException($"sending NBD command {command} at {offset}+{length} failed", e);
        }
        finally
        {
            _sendLock.Release();
        }
        if (_receiver.IsCompleted && _pending.TryRemove(handle, out _))
        {
            throw new IOException($"NBD connection lost before the reply to command {command} at {offset}+{length}");
        }
        return await reply.Task;
    }

    private async Task ReceiveLoopAsync()
    {
        Exception failure;
        try
        {
            while (true)
            {
                var header = await ReadExactlyAsync(16);
                if (BinaryPrimitives.ReadUInt32BigEndian(header) != SimpleReplyMagic)
                {
                    throw new IOException($"bad simple reply magic 0x{BinaryPrimitives.ReadUInt32BigEndian(header):x8}");
                }
                var error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
                var handle = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                if (!_pending.TryRemove(handle, out var pending))
                {
                    throw new IOException($"reply for unknown handle {handle}");
                }
                var data = error == 0 && pending.ReadLength > 0 ? await ReadExactlyAsync(pending.ReadLength) : [];
                pending.Reply.TrySetResult(new NbdReply(error, data));
            }
        }
        catch (Exception e)
        {
            failure = e;
        }
        ReceiveFailure = failure;
        foreach (var handle in _pending.Keys)
        {
            if (_pending.TryRemove(handle, out var pending))
            {
                pending.Reply.TrySetException(new IOException("NBD connection lost before the reply", failure));
            }
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int count)
    {
        var buffer = new byte[count];
        await _stream.ReadExactlyAsync(buffer);
        return buffer;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.Connected)
            {
                var disc = new byte[28];
                BinaryPrimitives.WriteUInt32BigEndian(disc, RequestMagic);
                BinaryPrimitives.WriteUInt16BigEndian(disc.AsSpan(6), CmdDisc);
                await _stream.WriteAsync(disc);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
        await _stream.DisposeAsync();
        await _receiver;
    }
}
