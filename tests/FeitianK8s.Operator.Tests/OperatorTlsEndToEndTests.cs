using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Runtime.InteropServices;
using System.Text;
using FeitianK8s.Core.Cluster;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Security;
using FeitianK8s.Operator.Desired;
using FeitianK8s.Proto.Master;
using FeitianK8s.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Operator.Tests;

/// <summary>
/// Mutual TLS as the operator deploys it, without Kubernetes: a real master and a real chunk-server
/// process run with exactly the arguments the operator's StatefulSet and DaemonSet render and the
/// certificate Secrets its planner issues, each Secret laid out on disk the way the kubelet mounts a
/// Secret volume (timestamped directory, `..data` link, key links) at the path the pods use. What
/// Kubernetes would do is done by hand and nothing else: $(POD_NAME), $(NODE_NAME) and $(POD_IP) are
/// expanded, the pods' DNS names and mount paths are text substitutions.
/// </summary>
public sealed class OperatorTlsEndToEndTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Real_master_and_chunk_server_with_the_operators_args_and_Secrets_serve_a_csi_node_certificate_and_refuse_a_caller_without_one()
    {
        var cluster = TestClusters.Minimal("prod", "storage");
        cluster.Spec.Masters.Replicas = 1;
        cluster.Spec.Replication.Factor = 1;
        cluster.Spec.Replication.MinRacks = 1;
        var ports = FreePorts(5);
        (cluster.Spec.Masters.Port, cluster.Spec.Masters.HttpPort, cluster.Spec.Masters.RaftPort) = (ports[0], ports[1], ports[2]);
        (cluster.Spec.ChunkServers.Port, cluster.Spec.ChunkServers.HttpPort) = (ports[3], ports[4]);
        var secrets = TlsSecretPlanner.Plan(cluster, null, new Dictionary<string, k8s.Models.V1Secret>(), DateTimeOffset.UtcNow)
            .ToDictionary(p => p.Secret.Metadata.Name, p => p.Secret);

        using var root = new TempDirectory("operator-tls-e2e");
        using var logs = XunitLoggerProvider.CreateFactory(output, LogLevel.Warning);
        string SecretVolume(string role) => MountSecret(Path.Combine(root.Path, "volumes", role), secrets[Names.TlsSecret(cluster, role)]);

        var masterArgs = Expand(MasterBuilder.StatefulSet(cluster), SecretVolume(ComponentRoles.Master), Path.Combine(root.Path, "master"));
        var chunkArgs = Expand(ChunkServerBuilder.DaemonSet(cluster, "rack-a"), SecretVolume(ComponentRoles.ChunkServer), Path.Combine(root.Path, "chunks"));
        Assert.Contains("--tls-cert", masterArgs);
        Assert.Contains("--tls-cert", chunkArgs);
        var masterUrl = $"https://127.0.0.1:{cluster.Spec.Masters.Port}";
        Assert.Contains(masterUrl, chunkArgs);

        using var master = Start("prod-master-0", "FeitianK8s.Master", masterArgs, logs);
        using var chunkServer = Start("prod-chunkserver", "FeitianK8s.ChunkServer", chunkArgs, logs);
        try
        {
            // The CSI node plugin's identity: the Secret prod-tls-csi-node as its pods mount it.
            var nodeVolume = SecretVolume(ComponentRoles.CsiNode);
            var nodeTls = ComponentTls.Load(new TlsFiles(Path.Combine(nodeVolume, "ca.crt"), Path.Combine(nodeVolume, "tls.crt"), Path.Combine(nodeVolume, "tls.key")));
            Assert.Equal(ComponentRoles.CsiNode, nodeTls.Role);
            using var client = new PanguClient(new PanguClientOptions { MasterAddresses = [masterUrl], ClientNode = "node-a1", Tls = nodeTls }, logs);
            var data = Encoding.UTF8.GetBytes("written through the operator's certificates");
            var read = await RetryAsync(async () =>
            {
                var path = $"/tls/{Guid.NewGuid():N}";
                await client.CreateAsync(path, 1);
                await using (var appender = await client.OpenForAppendAsync(path))
                {
                    await appender.AppendAsync(data, durable: true);
                    await appender.CloseAsync();
                }
                await using var reader = await client.OpenForReadAsync(path);
                var buffer = new byte[data.Length];
                var n = await reader.ReadAsync(0, buffer);
                return buffer[..n];
            });
            Assert.Equal(data, read);

            // A renewal as the operator makes it (new data in the same Secret), swapped into the running master's Secret
            // volume the way the kubelet does: new handshakes get the new certificate, no restart, and writes go on.
            using (var ca = CertificateAuthority.FromPem(Text(secrets[Names.TlsCaSecret(cluster)], "ca.crt"), Text(secrets[Names.TlsCaSecret(cluster)], "ca.key")))
            using (var renewedMaster = ca.Issue(ComponentRoles.Master, "feitian-master", TlsMount.DnsNames(cluster, ComponentRoles.Master), [], TlsSecretPlanner.CertificateValidity))
            {
                SwapSecret(SecretVolume(ComponentRoles.Master),
                    TlsSecretPlanner.RoleSecret(cluster, ComponentRoles.Master, renewedMaster, CertificateAuthority.CertificatePem(ca.Certificate)), "..2026_12_07_02_00_00.000000002");
                await RetryAsync(async () => await ServerSerialAsync(cluster.Spec.Masters.Port) == renewedMaster.SerialNumber ? true : throw new IOException("old certificate still served"));
            }
            Assert.Equal(data, await RetryAsync(async () =>
            {
                var path = $"/tls/after-renewal-{Guid.NewGuid():N}";
                await client.CreateAsync(path, 1);
                await using (var appender = await client.OpenForAppendAsync(path))
                {
                    await appender.AppendAsync(data, durable: true);
                    await appender.CloseAsync();
                }
                await using var reader = await client.OpenForReadAsync(path);
                var buffer = new byte[data.Length];
                return buffer[..await reader.ReadAsync(0, buffer)];
            }));

            // The operator's own path: its certificate from the Secret it issued, on the channel its status source uses.
            var operatorCertificates = new Tls.OperatorCertificates(Path.Combine(root.Path, "operator"), logs.CreateLogger<Tls.OperatorCertificates>());
            Assert.True(operatorCertificates.Update(cluster, secrets[Names.TlsSecret(cluster, ComponentRoles.Operator)]));
            using var statusSource = new Health.GrpcMasterStatusSource(_ => $"127.0.0.1:{cluster.Spec.Masters.Port}", logs.CreateLogger<Health.GrpcMasterStatusSource>())
            {
                TlsOf = operatorCertificates.For,
            };
            var report = await RetryAsync(async () => await statusSource.GetAsync(cluster, CancellationToken.None) ?? throw new IOException("no report"));
            Assert.NotNull(report.Leader);
            Assert.Single(report.ChunkServers, c => c.Alive);
            using var noCertificate = new Health.GrpcMasterStatusSource(_ => $"127.0.0.1:{cluster.Spec.Masters.Port}", logs.CreateLogger<Health.GrpcMasterStatusSource>());
            Assert.Null(await noCertificate.GetAsync(cluster, CancellationToken.None));

            // TLS but no client certificate: refused, and nothing is created.
            using var anonymous = GrpcChannel.ForAddress(masterUrl, new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true } },
            });
            var refused = await Assert.ThrowsAsync<RpcException>(async () =>
                await new FeitianK8s.Proto.Master.Master.MasterClient(anonymous).CreateFileAsync(new CreateFileRequest { Path = "/tls/anonymous", Replicas = 1 }));
            Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
            // Plain HTTP/2 to a TLS port gets no answer at all.
            using var plain = GrpcChannel.ForAddress($"http://127.0.0.1:{cluster.Spec.Masters.Port}");
            var plainError = await Assert.ThrowsAsync<RpcException>(async () =>
                await new FeitianK8s.Proto.Master.Master.MasterClient(plain).GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10)));
            Assert.NotEqual(StatusCode.OK, plainError.StatusCode);
            Assert.Null(await client.StatAsync("/tls/anonymous"));
        }
        finally
        {
            await chunkServer.StopAsync(TimeSpan.FromSeconds(10));
            await master.StopAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Fact]
    public async Task Raft_port_of_a_master_with_the_operators_args_admits_only_a_master_certificate()
    {
        var cluster = TestClusters.Minimal("prod", "storage");
        cluster.Spec.Masters.Replicas = 1;
        var ports = FreePorts(3);
        (cluster.Spec.Masters.Port, cluster.Spec.Masters.HttpPort, cluster.Spec.Masters.RaftPort) = (ports[0], ports[1], ports[2]);
        var secrets = TlsSecretPlanner.Plan(cluster, null, new Dictionary<string, k8s.Models.V1Secret>(), DateTimeOffset.UtcNow)
            .ToDictionary(p => p.Secret.Metadata.Name, p => p.Secret);
        using var root = new TempDirectory("operator-raft-tls");
        using var logs = XunitLoggerProvider.CreateFactory(output, LogLevel.Warning);
        string SecretVolume(string role) => MountSecret(Path.Combine(root.Path, "volumes", role), secrets[Names.TlsSecret(cluster, role)]);
        var masterArgs = Expand(MasterBuilder.StatefulSet(cluster), SecretVolume(ComponentRoles.Master), Path.Combine(root.Path, "master"));
        Assert.Equal($"127.0.0.1:{cluster.Spec.Masters.RaftPort}", masterArgs[masterArgs.IndexOf("--raft-endpoint") + 1]);

        using var master = Start("prod-master-0", "FeitianK8s.Master", masterArgs, logs);
        try
        {
            X509Certificate2 CertificateOf(string role)
            {
                var dir = SecretVolume(role);
                return X509Certificate2.CreateFromPemFile(Path.Combine(dir, "tls.crt"), Path.Combine(dir, "tls.key"));
            }
            // A peer with the masters' certificate is let in: its connection stays open (waiting for the port to listen first).
            using var masterCert = CertificateOf(ComponentRoles.Master);
            var (masterTcp, masterSsl) = await RetryAsync(() => RaftConnectAsync(cluster.Spec.Masters.RaftPort, masterCert));
            using var _ = masterTcp;
            await using var __ = masterSsl;
            var masterRead = masterSsl.ReadAsync(new byte[1]).AsTask();
            // Anyone else of the same CA is refused by the Raft transport itself, and so is a caller without a certificate:
            // the server ends the connection as soon as it has judged the client certificate.
            foreach (var role in new[] { ComponentRoles.ChunkServer, ComponentRoles.CsiNode, ComponentRoles.Operator, ComponentRoles.Admin, "none" })
            {
                using var other = role == "none" ? null : CertificateOf(role);
                Assert.True(await RefusedAsync(cluster.Spec.Masters.RaftPort, other), $"a {role} certificate was admitted to Raft");
            }
            // Judged before all of those, the master's connection is still open.
            Assert.False(masterRead.IsCompleted, "the master certificate's Raft connection was closed");
        }
        finally
        {
            await master.StopAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static async Task<(TcpClient, SslStream)> RaftConnectAsync(int port, X509Certificate2? certificate)
    {
        var tcp = new TcpClient();
        try
        {
            await tcp.ConnectAsync(IPAddress.Loopback, port);
            var ssl = new SslStream(tcp.GetStream());
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate!,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }).WaitAsync(TimeSpan.FromSeconds(20));
            return (tcp, ssl);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether the Raft port ends a connection presenting <paramref name="certificate"/>: the handshake fails, or (TLS 1.3,
    /// where the server judges the client certificate after the client finished) the first read ends.
    /// </summary>
    private static async Task<bool> RefusedAsync(int port, X509Certificate2? certificate)
    {
        TcpClient tcp;
        SslStream ssl;
        try
        {
            (tcp, ssl) = await RaftConnectAsync(port, certificate);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return true;
        }
        using (tcp)
        await using (ssl)
        {
            try
            {
                return await ssl.ReadAsync(new byte[1]).AsTask().WaitAsync(TimeSpan.FromSeconds(20)) == 0;
            }
            catch (Exception e) when (e is AuthenticationException or IOException)
            {
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
    }

    /// <summary>The container's args as the kubelet would run them here: variables expanded, cluster DNS and mount paths substituted.</summary>
    private static List<string> Expand(k8s.IKubernetesObject<k8s.Models.V1ObjectMeta> workload, string tlsDir, string dataDir)
    {
        var template = workload is k8s.Models.V1StatefulSet sts ? sts.Spec.Template : ((k8s.Models.V1DaemonSet)workload).Spec.Template;
        var container = template.Spec.Containers[0];
        Assert.Contains(container.VolumeMounts, m => m.Name == TlsMount.VolumeName && m.MountPath == TlsMount.MountPath);
        var args = container.Args.Select(a => a
            .Replace("$(POD_NAME)", "prod-master-0", StringComparison.Ordinal)
            .Replace("prod-master-0.prod-master.storage.svc", "127.0.0.1", StringComparison.Ordinal)
            .Replace("$(NODE_NAME)", "node-a1", StringComparison.Ordinal)
            .Replace("$(POD_IP)", "127.0.0.1", StringComparison.Ordinal)
            .Replace(TlsMount.MountPath, tlsDir, StringComparison.Ordinal)).ToList();
        args[args.IndexOf("--listen") + 1] = "127.0.0.1";
        args[args.IndexOf("--data") + 1] = dataDir;
        Assert.DoesNotContain(args, a => a.Contains(".svc", StringComparison.Ordinal) || a.Contains("$(", StringComparison.Ordinal));
        return args;
    }

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(string from, string to);

    /// <summary>The Secret's keys as a kubelet Secret volume: DIR/..TIMESTAMP/KEY, DIR/..data -> ..TIMESTAMP, DIR/KEY -> ..data/KEY.</summary>
    private static string MountSecret(string dir, k8s.Models.V1Secret secret)
    {
        if (Directory.Exists(dir))
        {
            return dir;
        }
        const string stamp = "..2026_12_07_01_00_00.000000001";
        Directory.CreateDirectory(Path.Combine(dir, stamp));
        foreach (var (key, value) in secret.Data)
        {
            File.WriteAllBytes(Path.Combine(dir, stamp, key), value);
        }
        File.CreateSymbolicLink(Path.Combine(dir, "..data_tmp"), stamp);
        Assert.Equal(0, Rename(Path.Combine(dir, "..data_tmp"), Path.Combine(dir, "..data")));
        foreach (var key in secret.Data.Keys)
        {
            File.CreateSymbolicLink(Path.Combine(dir, key), Path.Combine("..data", key));
        }
        return dir;
    }

    private static string Text(k8s.Models.V1Secret secret, string key) => Encoding.ASCII.GetString(secret.Data[key]);

    /// <summary>An update of a mounted Secret as the kubelet makes it: a new timestamped directory, then `..data` renamed over to it.</summary>
    private static void SwapSecret(string dir, k8s.Models.V1Secret secret, string stamp)
    {
        var old = File.ResolveLinkTarget(Path.Combine(dir, "..data"), returnFinalTarget: false)!.FullName;
        Directory.CreateDirectory(Path.Combine(dir, stamp));
        foreach (var (key, value) in secret.Data)
        {
            File.WriteAllBytes(Path.Combine(dir, stamp, key), value);
        }
        File.CreateSymbolicLink(Path.Combine(dir, "..data_tmp"), stamp);
        Assert.Equal(0, Rename(Path.Combine(dir, "..data_tmp"), Path.Combine(dir, "..data")));
        Directory.Delete(old, recursive: true);
    }

    /// <summary>The serial number of the certificate a TLS port presents now (a new handshake).</summary>
    private static async Task<string> ServerSerialAsync(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var ssl = new SslStream(tcp.GetStream());
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
        }).WaitAsync(TimeSpan.FromSeconds(20));
        return new X509Certificate2(ssl.RemoteCertificate!).SerialNumber;
    }

    private static ChildProcess Start(string name, string program, IEnumerable<string> args, ILoggerFactory logs)
    {
        var exe = ServerExecutable.Find(program);
        return ChildProcess.Start(name, exe.FileName, exe.PrefixArguments.Concat(args), logs.CreateLogger(name));
    }

    /// <summary>Until the master has elected itself and the chunk server has registered.</summary>
    private async Task<T> RetryAsync<T>(Func<Task<T>> call)
    {
        var deadline = DateTime.UtcNow + Generous;
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (e is PanguException or RpcException or IOException or SocketException or AuthenticationException && DateTime.UtcNow < deadline)
            {
                output.WriteLine($"not yet: {e.Message}");
                await Task.Delay(500);
            }
        }
    }

    private static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        listeners.ForEach(l => l.Start());
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        listeners.ForEach(l => l.Stop());
        return ports;
    }
}
