using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Block;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// Serves the devices of an <see cref="IBlockDeviceProvider"/> over NBD (fixed newstyle, simple
/// replies) on a TCP port and/or a unix socket.
/// </summary>
public sealed class NbdServer(IBlockDeviceProvider exports, NbdServerOptions options, ILogger<NbdServer> logger) : IAsyncDisposable
{
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private long _nextConnectionId;
    private int _state; // 0 new, 1 started, 2 stopped
    private string? _boundUnixSocket;

    /// <summary>The bound TCP endpoint (with the OS-chosen port when the options said 0); null without TCP.</summary>
    public IPEndPoint? TcpEndPoint { get; private set; }

    public string? UnixSocketPath => options.UnixSocketPath;

    public int ActiveConnections => _connections.Count;

    public Task StartAsync(CancellationToken ct = default)
    {
        options.Validate();
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            throw new InvalidOperationException("NBD server already started");
        try
        {
            if (options.TcpPort is int port)
            {
                var tcp = new Socket(options.TcpAddress.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                _listeners.Add(tcp);
                tcp.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                tcp.Bind(new IPEndPoint(options.TcpAddress, port));
                tcp.Listen(128);
                TcpEndPoint = (IPEndPoint)tcp.LocalEndPoint!;
                _acceptLoops.Add(AcceptLoopAsync(tcp, isTcp: true));
                logger.LogInformation("NBD server listening on tcp {EndPoint}", TcpEndPoint);
            }
            if (options.UnixSocketPath is string path)
            {
                RemoveStaleSocket(path);
                var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                _listeners.Add(unix);
                unix.Bind(new UnixDomainSocketEndPoint(path));
                _boundUnixSocket = path;
                unix.Listen(128);
                _acceptLoops.Add(AcceptLoopAsync(unix, isTcp: false));
                logger.LogInformation("NBD server listening on unix socket {Path}", path);
            }
        }
        catch
        {
            _stopping.Cancel();
            foreach (var listener in _listeners)
                listener.Dispose();
            if (_boundUnixSocket is not null)
                File.Delete(_boundUnixSocket);
            _state = 2;
            throw;
        }
        return Task.CompletedTask;
    }

    /// <summary>A socket file left by a previous run is removed; one a live server still answers on is an error.</summary>
    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path))
            return;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            return;
        }
        throw new IOException($"unix socket {path} is in use by a running server");
    }

    private async Task AcceptLoopAsync(Socket listener, bool isTcp)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException || _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Transient (e.g. EMFILE, ECONNABORTED): keep accepting.
                logger.LogWarning("NBD accept failed: {Error}", ex.SocketErrorCode);
                await Task.Delay(50).ConfigureAwait(false);
                continue;
            }
            if (isTcp)
                client.NoDelay = true;
            long id = Interlocked.Increment(ref _nextConnectionId);
            var connection = new NbdConnection(id, client, exports, options, logger);
            var task = Task.Run(() => connection.RunAsync(_stopping.Token));
            _connections[id] = task;
            _ = task.ContinueWith(_ => _connections.TryRemove(id, out Task? _), TaskScheduler.Default);
        }
    }

    /// <summary>Closes the listeners, ends every session (in-flight requests finish first) and removes the unix socket.</summary>
    public async Task StopAsync(CancellationToken ct = default)
    {
        if (Interlocked.Exchange(ref _state, 2) != 1)
            return;
        _stopping.Cancel();
        foreach (var listener in _listeners)
            listener.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        await Task.WhenAll(_connections.Values).WaitAsync(ct).ConfigureAwait(false);
        if (_boundUnixSocket is not null)
            File.Delete(_boundUnixSocket); // only the socket this server created; never a rival's
        logger.LogInformation("NBD server stopped");
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
