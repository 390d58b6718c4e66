namespace FeitianK8s.Core.Common;

/// <summary>
/// A folder of port reservations, one file per port naming whom it is kept for: a holder directory (live while it
/// exists) or a lease "until:UNIX-SECONDS". Every process that picks from the same folder skips the others' ports;
/// <see cref="MachineWide"/> is the folder all local clusters on this machine share.
/// </summary>
public sealed class PortReservations(string directoryPath)
{
    private const string LeasePrefix = "until:";

    /// <summary>The folder every cluster and test on this machine reserves in.</summary>
    public static PortReservations MachineWide { get; } = new(Path.Combine(Path.GetTempPath(), "feitian-listen-ports"));

    public string DirectoryPath { get; } = Path.GetFullPath(directoryPath);

    /// <summary>
    /// Reserves a port <paramref name="holder"/> already uses (one kept from an earlier run) unless a live holder
    /// has it; returns that other holder, or null when the port is now reserved for this one (or cannot be).
    /// </summary>
    public string? Hold(int port, string holder)
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
    public string? ReservedHolder(int port)
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

    internal static string LeaseUntil(DateTimeOffset until) => LeasePrefix + until.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes the reservation only if nobody holds the port: the text goes into a file of its own first and is then
    /// linked in under the port's name, which fails if that exists, so no process ever reads a half-written one.
    /// </summary>
    internal bool TryReserve(int port, string holder)
    {
        string? written = null;
        try
        {
            EnsureDirectory();
            written = Path.Combine(DirectoryPath, $"{port}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
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

    private void EnsureDirectory()
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(DirectoryPath);
        }
        else if (!Directory.Exists(DirectoryPath))
        {
            // Sticky and world-writable like /tmp (set after creating, past the umask): every user's clusters share one set of ports.
            const UnixFileMode shared = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute | UnixFileMode.StickyBit;
            Directory.CreateDirectory(DirectoryPath, shared);
            File.SetUnixFileMode(DirectoryPath, shared);
        }
    }

    private string ReservationFile(int port) => Path.Combine(DirectoryPath, port.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static bool SameDirectory(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)), StringComparison.Ordinal);
}
