using FeitianK8s.Operator.Kube;

namespace FeitianK8s.Operator.Tests;

public sealed class WorkQueueTests
{
    [Fact]
    public async Task A_key_is_queued_once_and_never_given_to_two_workers()
    {
        using var q = new WorkQueue();
        q.Add("a");
        q.Add("a");
        q.Add("b");
        Assert.Equal(2, q.Count);
        var first = await q.TakeAsync(CancellationToken.None);
        Assert.Equal("a", first);
        q.Add("a"); // while "a" is processed: remembered, not queued
        Assert.Equal(1, q.Count);
        Assert.Equal("b", await q.TakeAsync(CancellationToken.None));
        q.Done("a");
        Assert.Equal("a", await q.TakeAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Failures_back_off_exponentially_up_to_the_cap_and_forget_resets()
    {
        using var q = new WorkQueue(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(100));
        var delays = Enumerable.Range(0, 6).Select(_ => q.AddRateLimited("k")).ToList();
        Assert.Equal([10, 20, 40, 80, 100, 100], delays.Select(d => (int)d.TotalMilliseconds));
        Assert.Equal(6, q.Failures("k"));
        q.Forget("k");
        Assert.Equal(0, q.Failures("k"));
        Assert.Equal("k", await q.TakeAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
