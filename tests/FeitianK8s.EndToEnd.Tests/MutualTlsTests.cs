using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Security;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using MasterClient = FeitianK8s.Proto.Master.Master.MasterClient;
using ChunkServerClient = FeitianK8s.Proto.ChunkServer.ChunkServer.ChunkServerClient;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// Mutual TLS of a local cluster (on by default): callers without a certificate, with one of
/// another CA, or with a role the method does not allow are refused with a clear status and
/// counted in feitian_&lt;component&gt;_rpc_refused_total; renewed certificates are picked up
/// from their files under a running write load.
/// </summary>
[Collection(SharedClusterCollection.Name)]
public sealed class MutualTlsTests : IDisposable
{
    private readonly SharedClusterFixture _fixture;
    private readonly ITestOutputHelper _output;

    public MutualTlsTests(SharedClusterFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        fixture.Output.Current = output;
    }

    public void Dispose() => _fixture.Output.Current = null;

    private TestCluster Cluster => _fixture.Cluster;

    [Fact]
    public async Task A_caller_without_a_certificate_is_refused_and_counted()
    {
        var master = Cluster.Launcher.MasterAddress;
        var chunkServer = Cluster.Launcher.ChunkServer(1);
        Assert.StartsWith("https://", master, StringComparison.Ordinal);
        var masterBefore = await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.NoCertificate);
        var chunkBefore = await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.NoCertificate);

        using (var channel = StrangerChannel(master, clientCertificate: null))
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => new MasterClient(channel).GetClusterStatusAsync(new GetClusterStatusRequest()).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
            Assert.Contains("no client certificate", error.Status.Detail, StringComparison.Ordinal);
        }
        using (var channel = StrangerChannel(chunkServer.GrpcAddress, clientCertificate: null))
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => new ChunkServerClient(channel).DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 1 }).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        }
        // Plain HTTP/2 to a TLS port gets nowhere.
        using (var plain = GrpcChannel.ForAddress(master.Replace("https://", "http://", StringComparison.Ordinal)))
        {
            await Assert.ThrowsAsync<RpcException>(() => new MasterClient(plain).GetClusterStatusAsync(new GetClusterStatusRequest(),
                deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
        }
        Assert.Equal(masterBefore + 1, await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.NoCertificate));
        Assert.Equal(chunkBefore + 1, await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.NoCertificate));
    }

    [Fact]
    public async Task Status_without_a_certificate_at_a_TLS_cluster_says_TLS_is_required_and_how_to_give_a_certificate()
    {
        using var empty = new TempDirectory("no-certificates");
        var https = Cluster.Launcher.MasterAddress;
        var insecure = await FeitianUpProcess.RunCliAsync(_output, empty.Path, "status", "--master", https, "--insecure");
        Assert.False(insecure.Succeeded);
        var said = insecure.StandardOutput + insecure.StandardError;
        Assert.Contains($"{https} requires TLS with a client certificate of the cluster's CA", said, StringComparison.Ordinal);
        Assert.Contains("--data DIR", said, StringComparison.Ordinal);
        Assert.Contains("--tls-ca", said, StringComparison.Ordinal);

        // A plain http:// address at the same TLS port: the same diagnosis, and that the scheme is wrong.
        var http = "http://" + https["https://".Length..];
        var plain = await FeitianUpProcess.RunCliAsync(_output, empty.Path, "status", "--master", http, "--insecure");
        Assert.False(plain.Succeeded);
        Assert.Contains("the address says http:// but the server speaks TLS", plain.StandardOutput + plain.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_certificate_of_another_CA_is_refused_and_counted()
    {
        using var otherCa = CertificateAuthority.Create("someone else's CA", TimeSpan.FromDays(1));
        using var stranger = otherCa.Issue(ComponentRoles.Admin, "impostor", ["localhost"], [IPAddress.Loopback], TimeSpan.FromDays(1));
        var before = await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.Untrusted);
        var chunkServer = Cluster.Launcher.ChunkServer(2);
        var chunkBefore = await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.Untrusted);

        using (var channel = StrangerChannel(Cluster.Launcher.MasterAddress, stranger))
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => new MasterClient(channel).DeleteVolumeAsync(new DeleteVolumeRequest { Name = "anything" }).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
            Assert.Contains("not valid for this cluster's CA", error.Status.Detail, StringComparison.Ordinal);
        }
        using (var channel = StrangerChannel(chunkServer.GrpcAddress, stranger))
        {
            var error = await Assert.ThrowsAsync<RpcException>(() => new ChunkServerClient(channel).AppendAsync(new AppendRequest { ChunkId = 1, Epoch = 1 }).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        }
        Assert.Equal(before + 1, await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.Untrusted));
        Assert.Equal(chunkBefore + 1, await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.Untrusted));
    }

    [Fact]
    public async Task A_chunk_server_certificate_may_not_call_master_only_RPCs_and_nothing_changes()
    {
        var admin = Cluster.CreateClient();
        await admin.CreateAsync("/mtls/keep.bin");
        var before = await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.WrongRole);
        using var channel = Cluster.Launcher.Channel(Cluster.Launcher.MasterAddress, ComponentRoles.ChunkServer);
        var master = new MasterClient(channel);

        var create = await Assert.ThrowsAsync<RpcException>(() => master.CreateVolumeAsync(new CreateVolumeRequest { Name = "by-chunkserver", SizeBytes = 1 << 20 }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, create.StatusCode);
        Assert.Contains("role chunkserver may not call /feitian.pangu.v1.Master/CreateVolume", create.Status.Detail, StringComparison.Ordinal);
        var delete = await Assert.ThrowsAsync<RpcException>(() => master.DeleteFileAsync(new DeleteFileRequest { Path = "/mtls/keep.bin" }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, delete.StatusCode);
        // Heartbeats are its own business: allowed past the role check (and answered by the master).
        await master.GetClusterStatusAsync(new GetClusterStatusRequest());

        Assert.NotNull(await admin.StatAsync("/mtls/keep.bin"));
        var volumes = await new MasterClient(Cluster.Launcher.Channel(Cluster.Launcher.MasterAddress)).ListVolumesAsync(new ListVolumesRequest());
        Assert.DoesNotContain(volumes.Volumes, v => v.Name == "by-chunkserver");
        Assert.Equal(before + 2, await RefusedAsync(Cluster.Launcher.Master.HttpAddress, "master", RpcRefusals.WrongRole));

        // Only masters order chunk deletions: the admin CLI's certificate may not.
        var chunkServer = Cluster.Launcher.ChunkServer(3);
        var chunkBefore = await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.WrongRole);
        using var adminToChunkServer = Cluster.Launcher.Channel(chunkServer.GrpcAddress);
        var refused = await Assert.ThrowsAsync<RpcException>(() => new ChunkServerClient(adminToChunkServer).DeleteChunkAsync(new DeleteChunkRequest { ChunkId = 1 }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(chunkBefore + 1, await RefusedAsync(chunkServer.HttpAddress, "chunkserver", RpcRefusals.WrongRole));
    }

    [Fact]
    public async Task Certificates_renewed_under_a_running_write_load_are_used_without_restart_and_no_write_fails()
    {
        var tlsDir = Cluster.Launcher.TlsDirectory!;
        var client = Cluster.CreateClient();
        const string path = "/mtls/rotation.bin";
        await client.CreateAsync(path);
        await using var appender = await client.OpenForAppendAsync(path);
        using var stop = new CancellationTokenSource();
        var written = new List<byte[]>();
        var load = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested || i < 20; i++)
            {
                var block = TestData.Random(64 * 1024, 7000 + i);
                await appender.AppendAsync(block);
                written.Add(block);
            }
        });

        await Task.Delay(300);
        var renewed = new Dictionary<string, string>();
        foreach (var role in new[] { ComponentRoles.Master, ComponentRoles.ChunkServer, ComponentRoles.Admin })
        {
            using var issued = LocalPki.Reissue(tlsDir, role);
            renewed[role] = issued.SerialNumber;
        }
        // Servers read renewed files at the next handshake (checked at most once a second).
        await Task.Delay(1500);
        Assert.Equal(renewed[ComponentRoles.Master], await ServedCertificateSerialAsync(Cluster.Launcher.MasterAddress));
        Assert.Equal(renewed[ComponentRoles.ChunkServer], await ServedCertificateSerialAsync(Cluster.Launcher.ChunkServer(1).GrpcAddress));

        // A client made now presents the renewed admin certificate, and is admitted.
        using var fresh = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = [Cluster.Launcher.MasterAddress],
            ClientNode = "fresh",
            Tls = ComponentTls.Load(LocalPki.Files(tlsDir, ComponentRoles.Admin)),
        }, Cluster.LoggerFactory);
        Assert.Equal(renewed[ComponentRoles.Admin], fresh.Options.Tls!.Certificate.SerialNumber);
        await fresh.CreateAsync("/mtls/after-rotation.bin");

        await Task.Delay(500);
        await stop.CancelAsync();
        await load; // any failed append would throw here
        await appender.FlushAsync();
        var expected = written.SelectMany(b => b).ToArray();
        _output.WriteLine($"{written.Count} appends of 64 KiB during the rotation, none failed");
        Assert.Equal(expected.Length, appender.Length);
        Assert.Equal(TestData.Sha256(expected), (await Streams.ReadAllAsync(fresh, path)).Hash);
    }

    /// <summary>A channel with no certificate of ours, or a stranger's, that trusts any server (to reach the refusal).</summary>
    private static GrpcChannel StrangerChannel(string address, X509Certificate2? clientCertificate)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                ClientCertificates = clientCertificate is null ? null : [clientCertificate],
            },
        };
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    /// <summary>The serial number of the certificate a server presents on a new TLS connection.</summary>
    private async Task<string> ServedCertificateSerialAsync(string address)
    {
        var uri = new Uri(address);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port);
        var admin = Cluster.Launcher.ClientTls()!;
        await using var ssl = new SslStream(tcp.GetStream());
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ClientCertificates = [admin.Certificate],
            ApplicationProtocols = [SslApplicationProtocol.Http2],
        });
        return new X509Certificate2(ssl.RemoteCertificate!).SerialNumber;
    }

    /// <summary>feitian_COMPONENT_rpc_refused_total summed over methods for one reason, from the server's /metrics.</summary>
    private static async Task<double> RefusedAsync(string httpAddress, string component, string reason)
    {
        using var http = new HttpClient();
        var text = await http.GetStringAsync(httpAddress + "/metrics");
        var prefix = $"feitian_{component}_rpc_refused_total{{";
        return text.Split('\n')
            .Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains($"reason=\"{reason}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }
}
