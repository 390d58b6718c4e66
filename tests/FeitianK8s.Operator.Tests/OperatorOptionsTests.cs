namespace FeitianK8s.Operator.Tests;

public sealed class OperatorOptionsTests
{
    [Fact]
    public void The_volume_resync_period_defaults_to_15_seconds_and_is_set_in_whole_seconds()
    {
        Assert.Equal(TimeSpan.FromSeconds(15), OperatorOptions.Parse([]).VolumeResyncPeriod);
        Assert.Equal(TimeSpan.FromSeconds(3), OperatorOptions.Parse(["--volume-resync-seconds", "3"]).VolumeResyncPeriod);
        Assert.Contains("--volume-resync-seconds", OperatorOptions.Usage);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("soon")]
    public void A_bad_volume_resync_period_is_refused(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => OperatorOptions.Parse(["--volume-resync-seconds", value]));
        Assert.Contains("--volume-resync-seconds", e.Message);
    }

    [Fact]
    public void The_csi_cluster_role_prefix_defaults_to_feitian_csi()
    {
        Assert.Equal("feitian-csi", OperatorOptions.Parse([]).CsiClusterRolePrefix);
        Assert.Equal("prod-feitian-csi", OperatorOptions.Parse(["--csi-cluster-role-prefix", "prod-feitian-csi"]).CsiClusterRolePrefix);
        Assert.Contains("--csi-cluster-role-prefix", OperatorOptions.Usage);
    }

    [Theory]
    [InlineData("")]
    [InlineData("Upper-Case")]
    [InlineData("-leading-dash")]
    [InlineData("has space")]
    public void A_bad_csi_cluster_role_prefix_is_refused(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => OperatorOptions.Parse(["--csi-cluster-role-prefix", value]));
        Assert.Contains("--csi-cluster-role-prefix", e.Message);
    }

    [Fact]
    public void Node_failover_is_on_by_default_and_turned_off_with_either_flag_form()
    {
        Assert.True(OperatorOptions.Parse([]).NodeFailover);
        Assert.False(OperatorOptions.Parse(["--node-failover=false"]).NodeFailover);
        Assert.False(OperatorOptions.Parse(["--node-failover", "false"]).NodeFailover);
        Assert.True(OperatorOptions.Parse(["--node-failover=true", "--workers=3"]).NodeFailover);
        Assert.Equal(3, OperatorOptions.Parse(["--workers=3"]).Workers);
        Assert.Contains("--node-failover", Assert.Throws<ArgumentException>(() => OperatorOptions.Parse(["--node-failover", "maybe"])).Message);
    }
}
