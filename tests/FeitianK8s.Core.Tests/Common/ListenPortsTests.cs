using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Common;

namespace FeitianK8s.Core.Tests.Common;

/// <summary>Ports picked for listeners that keep their number across restarts stay out of the kernel's ephemeral range.</summary>
public sealed class ListenPortsTests
{
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
}
