using FeitianK8s.ChunkServer.Replication;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>The adaptive rule: the rebuild share halves while foreground latency is above its baseline and grows back by 0.1 a step.</summary>
public sealed class AdaptiveRebuildShareTests
{
    private TimeSpan _now = TimeSpan.FromSeconds(100);

    private void Observe(AdaptiveRebuildShare share, double milliseconds, int times = 50)
    {
        for (var i = 0; i < times; i++)
        {
            share.Observe(TimeSpan.FromMilliseconds(milliseconds));
        }
    }

    [Fact]
    public void Share_shrinks_when_latency_rises_above_baseline_and_grows_back_when_it_falls()
    {
        var share = new AdaptiveRebuildShare(() => _now);
        Observe(share, 1, 500);
        Assert.Equal(1.0, share.Share);
        _now += AdaptiveRebuildShare.Step;
        Assert.Equal(1.0, share.Share);

        // Foreground latency jumps to 10x: multiplicative decrease every step, down to the floor.
        Observe(share, 10);
        _now += AdaptiveRebuildShare.Step;
        Assert.Equal(0.5, share.Share, 6);
        _now += AdaptiveRebuildShare.Step;
        Assert.Equal(0.25, share.Share, 6);
        for (var i = 0; i < 10; i++)
        {
            Observe(share, 10, 5);
            _now += AdaptiveRebuildShare.Step;
        }
        Assert.Equal(AdaptiveRebuildShare.MinShare, share.Share, 6);
        Assert.True(share.BaselineLatencySeconds < 0.003, $"the baseline followed the spike: {share.BaselineLatencySeconds}");

        // Latency back to normal: additive increase of 0.1 per step, capped at 1.
        Observe(share, 1, 100);
        _now += AdaptiveRebuildShare.Step;
        Assert.Equal(AdaptiveRebuildShare.MinShare + 0.1, share.Share, 6);
        for (var i = 0; i < 20; i++)
        {
            _now += AdaptiveRebuildShare.Step;
            _ = share.Share;
        }
        Assert.Equal(1.0, share.Share);
    }

    [Fact]
    public void Small_absolute_rises_do_not_count_as_congestion()
    {
        var share = new AdaptiveRebuildShare(() => _now);
        Observe(share, 0.05, 500);
        Observe(share, 0.5);  // 10x, but only 0.45 ms more
        _now += AdaptiveRebuildShare.Step;
        Assert.Equal(1.0, share.Share);
    }
}
