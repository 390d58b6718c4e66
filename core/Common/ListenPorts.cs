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

    private const string LeasePrefix = "until:";

    /// <summary>Where reservations live, one file per port naming its holder; shared by every process on the machine.</summary>
    public static string ReservationDirectory { get; } = Path.Combine(Path.GetTempPath(), "feitian-listen-ports");

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
    internal static int? PickBetween(IPAddress bindTo, string? holder, int lowest, int below, int attempts)
    {
        var reservation = holder is null ? LeaseUntil(DateTimeOffset.UtcNow + Lease) : Path.GetFullPath(holder);
        for (var attempt = 0; attempt < attempts; attempt++)
        {
            var port = Random.Shared.Next(lowest, below);
            if (ReservedHolder(port) is null && TryBind(bindTo, port) && TryReserve(port, reservation))
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
            TryReserve(port, Path.GetFullPath(holder));
        }
        return null;
    }

    /// <summary>
    /// Whom <paramref name="port"/> is reserved for: a holder directory that exists, or a lease ("until:UNIX-SECONDS")
    /// that has not run out. A reservation whose holder is gone or whose lease ran out is removed.
    /// </summary>
    public static string? ReservedHolder(int port)
    {
        var file = ReservationFile(port);
        try
        {
            var holder = File.ReadAllText(file).Trim();
            if (IsLive(holder))
            {
                return holder;
            }
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No reservation, or one removed this instant: treat it as absent; the bind still checks.
        }
        return null;
    }

    private static bool IsLive(string holder) =>
        holder.StartsWith(LeasePrefix, StringComparison.Ordinal)
            ? long.TryParse(holder.AsSpan(LeasePrefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var until)
                && DateTimeOffset.UtcNow.ToUnixTimeSeconds() < until
            : holder.Length > 0 && Directory.Exists(holder);

    private static string LeaseUntil(DateTimeOffset until) => LeasePrefix + until.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes the reservation only if nobody holds the port: the text goes into a file of its own first and is then
    /// linked in under the port's name, which fails if that exists, so no process ever reads a half-written one.
    /// </summary>
    private static bool TryReserve(int port, string holder)
    {
        string? written = null;
        try
        {
            EnsureReservationDirectory();
            written = Path.Combine(ReservationDirectory, $"{port}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
            File.WriteAllText(written, holder);
            File.Move(written, ReservationFile(port), overwrite: false);
            written = null;
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
        finally
        {
            if (written is not null)
            {
                try
                {
                    File.Delete(written);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                }
            }
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
