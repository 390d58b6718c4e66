using System.Net;
using System.Net.Sockets;

namespace FeitianK8s.Core.Common;

/// <summary>
/// Picks ports for listeners that must be named before they bind and keep their number across restarts
/// (a local cluster's masters and chunk servers, test groups). A port the kernel hands out for port 0 comes
/// from the ephemeral range, which outgoing connections of any process also draw from: between the pick and
/// the bind, or while a server is down for a restart, one of them can take it ("address already in use").
/// So ports are picked below the ephemeral range (read from <c>/proc/sys/net/ipv4/ip_local_port_range</c>),
/// where only listeners that ask for them by number live, and checked by binding once.
/// </summary>
public static class ListenPorts
{
    // Above the well-known defaults of this project and others (NBD 10809, metrics 9811, ...).
    private const int Lowest = 20_000;
    private const string EphemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range";

    /// <summary>A port nobody listens on now on <paramref name="address"/> (loopback by default), outside the ephemeral range when possible.</summary>
    public static int Pick(IPAddress? address = null)
    {
        var bindTo = address is null || address.Equals(IPAddress.Any) ? IPAddress.Loopback : address;
        var below = EphemeralLow();
        if (below - Lowest >= 1_000)
        {
            for (var attempt = 0; attempt < 200; attempt++)
            {
                var port = Random.Shared.Next(Lowest, below);
                if (TryBind(bindTo, port))
                {
                    return port;
                }
            }
        }
        using var probe = new TcpListener(bindTo, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static bool TryBind(IPAddress address, int port)
    {
        try
        {
            using var probe = new TcpListener(address, port);
            probe.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int EphemeralLow()
    {
        try
        {
            var fields = File.ReadAllText(EphemeralRangeFile).Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            return fields.Length >= 1 && int.TryParse(fields[0], out var low) ? low : 32768;
        }
        catch (IOException)
        {
            return 32768;
        }
        catch (UnauthorizedAccessException)
        {
            return 32768;
        }
    }
}
