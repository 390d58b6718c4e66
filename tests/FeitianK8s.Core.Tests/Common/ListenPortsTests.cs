using System.Net;
using System.Globalization;
using System.Net.Sockets;
using FeitianK8s.Core.Common;
using FeitianK8s.Testing;

namespace FeitianK8s.Core.Tests.Common;

/// <summary>
/// Ports picked for listeners that keep their number across restarts stay out of the kernel's ephemeral range, and
/// out of other clusters' reservations (real files in a reservation folder, real binds on loopback). The reservation
/// tests use a folder of their own: other tests running at the same time pick, and lease, from the machine-wide one.
/// </summary>
public sealed class ListenPortsTests : IDisposable
{
    private readonly TempDirectory folder = new();
    private readonly PortReservations reservations;

    public ListenPortsTests() => reservations = new PortReservations(folder.Path);

    public void Dispose() => folder.Dispose();

    [Fact]
    public void Picked_ports_are_below_the_ephemeral_range_and_can_be_bound()
    {
        var ephemeralLow = int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(ephemeralLow > 21_000, $"this machine's ephemeral range starts at {ephemeralLow}: the picker would fall back to port 0");
        var ports = Enumerable.Range(0, 20).Select(_ => ListenPorts.Pick()).ToList();
        Assert.All(ports, p => Assert.InRange(p, 20_000, ephemeralLow - 1));
        foreach (var port in ports.Distinct())
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            Assert.Equal(port, ((IPEndPoint)listener.LocalEndpoint).Port);
        }
    }

    [Fact]
    public void A_port_in_use_is_never_picked()
    {
        var held = Enumerable.Range(0, 50).Select(_ =>
        {
            var l = new TcpListener(IPAddress.Loopback, ListenPorts.Pick());
            l.Start();
            return l;
        }).ToList();
        try
        {
            var inUse = held.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToHashSet();
            Assert.Equal(50, inUse.Count);
            Assert.All(Enumerable.Range(0, 200).Select(_ => ListenPorts.Pick()), p => Assert.DoesNotContain(p, inUse));
        }
        finally
        {
            held.ForEach(l => l.Stop());
        }
    }

    [Fact]
    public void A_port_reserved_for_a_live_holder_is_never_picked_and_is_free_again_once_the_holder_is_deleted()
    {
        var (low, below) = RandomWindow(16);
        using var holder = new TempDirectory();
        var reserved = Enumerable.Range(low, 15).ToList();
        Assert.All(reserved, p => Assert.Null(reservations.Hold(p, holder.Path)));
        Assert.All(reserved, p => Assert.Equal(Path.GetFullPath(holder.Path), reservations.ReservedHolder(p)));

        // The one port left is picked, and leased: a second pick finds the whole window reserved.
        Assert.Equal(below - 1, ListenPorts.PickBetween(IPAddress.Loopback, null, low, below, attempts: 500, reservations));
        Assert.StartsWith("until:", reservations.ReservedHolder(below - 1));
        Assert.Null(ListenPorts.PickBetween(IPAddress.Loopback, null, low, below, attempts: 500, reservations));

        holder.Dispose();
        Assert.All(reserved, p => Assert.Null(reservations.ReservedHolder(p)));
        Assert.All(reserved, p => Assert.False(File.Exists(ReservationFile(p)), $"the stale reservation of {p} was not removed"));
        var after = Enumerable.Range(0, 5).Select(_ => ListenPorts.PickBetween(IPAddress.Loopback, null, low, below, attempts: 500, reservations)).ToList();
        Assert.All(after, p => Assert.InRange(p ?? -1, low, below - 2));
        Assert.Equal(5, after.Distinct().Count());
    }

    [Fact]
    public void A_lease_that_ran_out_and_a_reservation_without_a_holder_are_removed_and_their_ports_picked_again()
    {
        var (low, below) = RandomWindow(2);
        Directory.CreateDirectory(reservations.DirectoryPath);
        File.WriteAllText(ReservationFile(low), "until:" + DateTimeOffset.UtcNow.AddSeconds(-1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture));
        File.WriteAllText(ReservationFile(low + 1), "");
        Assert.Null(reservations.ReservedHolder(low));
        Assert.Null(reservations.ReservedHolder(low + 1));
        Assert.False(File.Exists(ReservationFile(low)));
        Assert.False(File.Exists(ReservationFile(low + 1)));
        var picked = new[] { ListenPorts.PickBetween(IPAddress.Loopback, null, low, below, attempts: 500, reservations), ListenPorts.PickBetween(IPAddress.Loopback, null, low, below, attempts: 500, reservations) };
        Assert.Equal([low, low + 1], picked.Order().ToArray());
    }

    [Fact]
    public void A_port_picked_for_a_holder_is_reserved_for_it_and_another_holder_cannot_take_it()
    {
        var (low, below) = RandomWindow(8);
        using var first = new TempDirectory();
        using var second = new TempDirectory();
        var port = ListenPorts.PickBetween(IPAddress.Loopback, first.Path, low, below, attempts: 500, reservations);
        Assert.NotNull(port);
        Assert.Equal(Path.GetFullPath(first.Path), reservations.ReservedHolder(port.Value));

        Assert.Equal(Path.GetFullPath(first.Path), reservations.Hold(port.Value, second.Path));
        Assert.Null(reservations.Hold(port.Value, first.Path + "/"));
        Assert.Equal(Path.GetFullPath(first.Path), reservations.ReservedHolder(port.Value));
        var others = Enumerable.Range(0, 100).Select(_ => ListenPorts.PickBetween(IPAddress.Loopback, second.Path, low, below, attempts: 500, reservations)).ToList();
        Assert.DoesNotContain(port, others);
        Assert.Contains(others, p => p is not null);
    }

    private string ReservationFile(int port) => Path.Combine(reservations.DirectoryPath, port.ToString(CultureInfo.InvariantCulture));

    /// <summary>A window of ports below the ephemeral range that all bind now, at a random place so that listeners of tests running at the same time rarely meet it.</summary>
    private static (int Low, int Below) RandomWindow(int size)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var low = Random.Shared.Next(20_000, 32_000 - size);
            if (Enumerable.Range(low, size).All(port => ListenPorts.TryBind(IPAddress.Loopback, port)))
            {
                return (low, low + size);
            }
        }
        throw new InvalidOperationException($"no window of {size} free ports found below 32000");
    }
}
