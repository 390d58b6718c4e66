using FeitianK8s.Master.Cluster;

namespace FeitianK8s.Master.Tests;

/// <summary>The report grace after a start or leader change (<see cref="ChunkServerLiveness.InGrace"/>).</summary>
public sealed class ReportGraceTests
{
    private readonly ManualClock _clock = new();

    [Fact]
    public void Grace_lasts_until_every_registered_server_reported_or_the_grace_period_ends()
    {
        var liveness = new ChunkServerLiveness(_clock, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(8));
        string[] registered = ["cs-1", "cs-2"];
        Assert.True(liveness.InGrace(registered));
        liveness.Record("cs-1", 100, 0, 0);
        Assert.True(liveness.InGrace(registered));
        liveness.Record("cs-2", 100, 0, 0);
        Assert.False(liveness.InGrace(registered));

        // A leader change starts a new grace: reports from before it do not count.
        _clock.Advance(TimeSpan.FromSeconds(1));
        liveness.StartGrace();
        Assert.True(liveness.InGrace(registered));
        _clock.Advance(TimeSpan.FromSeconds(7.9));
        Assert.True(liveness.InGrace(registered));
        _clock.Advance(TimeSpan.FromSeconds(0.2));
        Assert.False(liveness.InGrace(registered));
    }

    [Fact]
    public void A_master_without_registered_servers_has_no_grace_and_the_default_grace_is_the_heartbeat_timeout()
    {
        var liveness = new ChunkServerLiveness(_clock, TimeSpan.FromSeconds(5));
        Assert.False(liveness.InGrace([]));
        Assert.Equal(TimeSpan.FromSeconds(5), liveness.ReportGrace);
    }
}
