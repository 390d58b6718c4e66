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
/// folder, and no pick takes a port reserved for a holder that still exists.
/// </summary>
public static class ListenPorts
{
    // Above the well-known defaults of this project and others (NBD 10809, metrics 9811, ...).
    private const int Lowest = 20_000;
    private const string EphemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range";

    /// <summary>Where reservations live, one file per port naming its holder; shared by every process on the machine.</summary>
    public static string ReservationDirectory { get; } = Path.Combine(Path.GetTempPath(), "feitian-listen-ports");

    /// <summary>
    /// A port nobody listens on now on <paramref name="address"/> (loopback by default), outside the ephemeral range
    /// when possible, and not reserved for a live holder. With <paramref name="holder"/> the port is reserved for it
    /// until that directory is deleted.
    /// </summary>
    public static int Pick(IPAddress? address = null, string? holder = null)
    {
        var bindTo = address is null || address.Equals(IPAddress.Any) ? IPAddress.Loopback : address;
        var below = EphemeralLow();
        return below - Lowest >= 1_000 && PickBetween(bindTo, holder, Lowest, below, attempts: 200) is { } port ? port : KernelPort(bindTo);
    }

    /// <summary>A random port in [<paramref name="lowest"/>, <paramref name="below"/>) that is free, unreserved, and (with a holder) now reserved; null after that many tries.</summary>
    internal static int? PickBetween(IPAddress bindTo, string? holder, int lowest, int below, int attempts)
    {
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            var port = Random.Shared.Next(lowest, below);
            if (ReservedHolder(port) is null && TryBind(bindTo, port) && (holder is null || TryReserve(port, holder)))
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
    /// has it; returns that other holder, or null when the port is now reserved for this one (or cannot be).
    /// </summary>
    public static string? Hold(int port, string holder)
    {
        var current = ReservedHolder(port);
        if (current is not null && !SameDirectory(current, holder))
        {
            return current;
        }
        if (current is null)
        {
            TryReserve(port, holder);
        }
        return null;
    }

    /// <summary>The live holder <paramref name="port"/> is reserved for; a reservation whose holder is gone is removed.</summary>
    public static string? ReservedHolder(int port)
    {
        var file = ReservationFile(port);
        try
        {
            var holder = File.ReadAllText(file).Trim();
            if (holder.Length > 0 && Directory.Exists(holder))
            {
                return holder;
            }
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No reservation, or one being written or removed this instant: treat it as absent; the bind still checks.
        }
        return null;
    }

    /// <summary>Writes the reservation only if nobody holds the port (CreateNew is atomic across processes).</summary>
    private static bool TryReserve(int port, string holder)
    {
        try
        {
            EnsureReservationDirectory();
            using var file = new FileStream(ReservationFile(port), FileMode.CreateNew, FileAccess.Write);
            file.Write(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(holder)));
            return true;
        }
        catch (IOException) when (File.Exists(ReservationFile(port)))
        {
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A machine where the folder cannot be written: the pick is as good as before reservations existed.
            return true;
        }
    }

    private static void EnsureReservationDirectory()
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(ReservationDirectory);
        }
        else if (!Directory.Exists(ReservationDirectory))
        {
            // Sticky and world-writable like /tmp (set after creating, past the umask): every user's clusters share one set of ports.
            const UnixFileMode shared = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute | UnixFileMode.StickyBit;
            Directory.CreateDirectory(ReservationDirectory, shared);
            File.SetUnixFileMode(ReservationDirectory, shared);
        }
    }

    private static string ReservationFile(int port) => Path.Combine(ReservationDirectory, port.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static bool SameDirectory(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)), StringComparison.Ordinal);

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
