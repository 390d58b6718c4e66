using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Cluster;

namespace FeitianK8s.Testing;

/// <summary>
/// Proves that a server a test killed is really gone before the test claims anything about
/// how the system copes: its process has exited and its ports refuse connections.
/// </summary>
public static class ServerFaults
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Fails unless <paramref name="server"/>'s process has exited and its gRPC (and HTTP) ports refuse connections.</summary>
    public static async Task AssertServerIsDownAsync(LocalServer server)
    {
        var process = server.Process;
        Assert.True(process is not null, $"{server.Name} was never started, so it cannot have been killed");
        using (var exit = new CancellationTokenSource(ExitTimeout))
        {
            try
            {
                await process.WaitForExitAsync(exit.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"{server.Name} (pid {process.Pid}) is still running {ExitTimeout} after it was killed");
            }
        }
        Assert.True(process.HasExited, $"{server.Name} (pid {process.Pid}) has not exited");
        Assert.False(server.IsRunning, $"{server.Name} is still reported running");
        var endpoints = server.Endpoints;
        Assert.True(endpoints is not null, $"{server.Name} has no endpoints to probe");
        await AssertPortRefusesAsync(server.Name + " gRPC", endpoints.GrpcPort);
        if (endpoints.HttpPort != 0)
        {
            await AssertPortRefusesAsync(server.Name + " HTTP", endpoints.HttpPort);
        }
    }

    /// <summary>Fails unless a TCP connect to 127.0.0.1:<paramref name="port"/> is refused.</summary>
    public static async Task AssertPortRefusesAsync(string what, int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var error = await Record.ExceptionAsync(async () => await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token));
        Assert.True(error is not null, $"{what} port {port} accepted a connection, so the server is not down");
        var refused = Assert.IsType<SocketException>(error);
        Assert.True(refused.SocketErrorCode == SocketError.ConnectionRefused,
            $"{what} port {port}: expected the connection to be refused, got {refused.SocketErrorCode}");
    }
}
