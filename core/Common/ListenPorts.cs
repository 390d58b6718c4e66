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
/// A free port is not yet a safe one: a server that keeps its port may be down for a restart just when
/// another cluster on the machine picks. So a port picked for a <c>holder</c> (the directory whose servers
/// will keep it, e.g. a local cluster's data directory) is also written down in a machine-wide reservation
/// folder, and no pick takes a port reserved for a holder that still exists. A port picked without a holder
/// is leased for <see cref="Lease"/> instead, which covers the time between the pick and the listener's bind
/// (a master picks its HTTP port before its Raft log is loaded).
/// </summary>
public static class ListenPorts
{
    // Above the well-known defaults of this project and others (NBD 10809, metrics 9811, ...).
    private const int Lowest = 20_000;
    private const string EphemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range";

    /// <summary>Where reservations live, one file per port naming its holder; shared by every process on the machine.</summary>
    public static string ReservationDirectory => PortReservations.MachineWide.DirectoryPath;

    /// <summary>How long a port picked without a holder stays reserved: long enough for its listener to bind.</summary>
    public static TimeSpan Lease { get; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// A port nobody listens on now on <paramref name="address"/> (loopback by default), outside the ephemeral range
    /// when possible, and not reserved for a live holder. With <paramref name="holder"/> the port is reserved for it
    /// until that directory is deleted; without, it is leased for <see cref="Lease"/>.
    /// </summary>
    public static int Pick(IPAddress? address = null, string? holder = null)
    {
        var bindTo = address is null || address.Equals(IPAddress.Any) ? IPAddress.Loopback : address;
        var below = EphemeralLow();
        return below - Lowest >= 1_000 && PickBetween(bindTo, holder, Lowest, below, attempts: 200) is { } port ? port : KernelPort(bindTo);
    }

    /// <summary>A random port in [<paramref name="lowest"/>, <paramref name="below"/>) that is free and unreserved, now reserved (for the holder, else leased); null after that many tries.</summary>
    internal static int? PickBetween(IPAddress bindTo, string? holder, int lowest, int below, int attempts, PortReservations? reservations = null)
    {
        reservations ??= PortReservations.MachineWide;
        var reservation = holder is null ? PortReservations.LeaseUntil(DateTimeOffset.UtcNow + Lease) : Path.GetFullPath(holder);
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            var port = Random.Shared.Next(lowest, below);
            if (reservations.ReservedHolder(port) is null && TryBind(bindTo, port) && reservations.TryReserve(port, reservation))
            {
                return port;
            }
        }
        return null;
    }

    private static int KernelPort(IPAddress bindTo)
    {
        using var probe = new TcpListener(bindTo, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>
    /// Reserves a port <paramref name="holder"/> already uses (one kept from an earlier run) unless a live holder
    /// has it, in the machine-wide folder; returns that other holder, or null when the port is now reserved for this one.
    /// </summary>
    public static string? Hold(int port, string holder) => PortReservations.MachineWide.Hold(port, holder);

    /// <summary>Whom <paramref name="port"/> is reserved for in the machine-wide folder (see <see cref="PortReservations.ReservedHolder"/>).</summary>
    public static string? ReservedHolder(int port) => PortReservations.MachineWide.ReservedHolder(port);

    internal static bool TryBind(IPAddress address, int port)
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
