using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Tests;

/// <summary>The snapshot target the operator hands the CSI controller: parsed from flags and environment, logged without secrets.</summary>
public sealed class SnapshotTargetOptionsTests
{
    private const string SecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    private const string AccessKey = "AKIAIOSFODNN7EXAMPLE";

    private static readonly string[] Base = ["--endpoint", "unix:///tmp/csi.sock", "--mode", "controller", "--masters", "m:9000"];

    private static CsiDriverOptions Parse(IReadOnlyDictionary<string, string> env, params string[] extra) =>
        CsiDriverOptions.Parse([.. Base, .. extra], name => env.GetValueOrDefault(name));

    private static readonly Dictionary<string, string> OperatorEnv = new()
    {
        [SnapshotTarget.EndpointEnv] = "https://s3.example.com:9000",
        [SnapshotTarget.BucketEnv] = "feitian-backups",
        [SnapshotTarget.RegionEnv] = "eu-west-1",
        [SnapshotTarget.AccessKeyIdEnv] = AccessKey,
        [SnapshotTarget.SecretAccessKeyEnv] = SecretKey,
    };

    [Fact]
    public void The_environment_the_operator_sets_becomes_the_snapshot_target()
    {
        var target = Parse(OperatorEnv).SnapshotTarget!;
        Assert.Equal(new Uri("https://s3.example.com:9000"), target.Endpoint);
        Assert.Equal(("feitian-backups", "eu-west-1", AccessKey, SecretKey), (target.Bucket, target.Region, target.AccessKeyId, target.SecretAccessKey));
        Assert.True(target.HasCredentials);
        Assert.DoesNotContain(SecretKey, target.ToString());
        Assert.DoesNotContain(AccessKey, target.ToString());
        Assert.Contains("credentials present", target.ToString());
    }

    [Fact]
    public void Flags_win_over_the_environment_and_no_target_means_null()
    {
        var target = Parse(OperatorEnv, "--snapshot-endpoint", "http://minio.local:9000", "--snapshot-bucket=snaps").SnapshotTarget!;
        Assert.Equal(("http://minio.local:9000/", "snaps", "eu-west-1"), (target.Endpoint.ToString(), target.Bucket, target.Region));

        Assert.Null(Parse(new Dictionary<string, string>()).SnapshotTarget);
        // Credentials alone (say, for something else in the pod) are no target.
        Assert.Null(Parse(new Dictionary<string, string> { [SnapshotTarget.AccessKeyIdEnv] = AccessKey }).SnapshotTarget);
        var noCredentials = Parse(new Dictionary<string, string>(), "--snapshot-endpoint", "http://minio.local:9000", "--snapshot-bucket", "snaps").SnapshotTarget!;
        Assert.False(noCredentials.HasCredentials);
        Assert.Null(noCredentials.Region);
    }

    [Theory]
    [InlineData("--snapshot-endpoint", "s3.example.com", "--snapshot-bucket", "snaps", "snapshot endpoint 's3.example.com'")]
    [InlineData("--snapshot-endpoint", "ftp://s3.example.com", "--snapshot-bucket", "snaps", "is not an http(s) URL")]
    [InlineData("--snapshot-endpoint", "https://s3.example.com", "--snapshot-bucket", "Bad_Bucket", "snapshot bucket 'Bad_Bucket'")]
    [InlineData("--snapshot-endpoint", "https://s3.example.com", "--snapshot-region", "eu-west-1", "snapshot bucket ''")]
    [InlineData("--snapshot-bucket", "snaps", "--snapshot-region", "eu-west-1", "snapshot endpoint ''")]
    public void An_incomplete_or_malformed_target_is_refused_with_the_reason(string flag1, string value1, string flag2, string value2, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => Parse(new Dictionary<string, string>(), flag1, value1, flag2, value2));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Credentials_cannot_be_given_as_flags()
    {
        var error = Assert.Throws<ArgumentException>(() => Parse(new Dictionary<string, string>(), "--snapshot-secret-access-key", SecretKey));
        Assert.Contains("unknown option --snapshot-secret-access-key", error.Message);
    }

    [Fact]
    public async Task The_driver_logs_its_snapshot_target_without_credentials_and_advertises_snapshots()
    {
        var dir = Directory.CreateTempSubdirectory("feitian-csi-snap-");
        try
        {
            var options = CsiDriverOptions.Parse(
                ["--endpoint", $"unix://{dir.FullName}/csi.sock", "--mode", "controller", "--masters", "127.0.0.1:1"],
                name => OperatorEnv.GetValueOrDefault(name));
            var logs = new CapturingLoggerProvider();
            await using (var host = CsiDriverHost.Create(options, logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Information)))
            {
                await host.StartAsync();
                using var client = new CsiClient(options.SocketPath);
                var caps = await client.Controller.ControllerGetCapabilitiesAsync(new Proto.Csi.ControllerGetCapabilitiesRequest());
                Assert.Contains(caps.Capabilities, c => c.Rpc.Type is Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteSnapshot);
                Assert.Contains(caps.Capabilities, c => c.Rpc.Type is Proto.Csi.ControllerServiceCapability.Types.RPC.Types.Type.ListSnapshots);
                await host.StopAsync();
            }
            Assert.Contains(logs.Lines, l => l.Contains("Snapshot target https://s3.example.com:9000/ bucket feitian-backups region eu-west-1; credentials present", StringComparison.Ordinal));
            Assert.DoesNotContain(logs.Lines, l => l.Contains(SecretKey, StringComparison.Ordinal) || l.Contains(AccessKey, StringComparison.Ordinal));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
