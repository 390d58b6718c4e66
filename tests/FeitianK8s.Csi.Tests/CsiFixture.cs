using FeitianK8s.Proto.Csi;
using FeitianK8s.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using MasterApi = FeitianK8s.Proto.Master;
using Mode = FeitianK8s.Proto.Csi.VolumeCapability.Types.AccessMode.Types.Mode;

namespace FeitianK8s.Csi.Tests;

/// <summary>A driver hosted in this process on a unix socket, with its real gRPC client.</summary>
public sealed class DriverInstance(CsiDriverHost host, CsiClient client) : IAsyncDisposable
{
    public CsiDriverHost Host { get; } = host;
    public CsiClient Client { get; } = client;

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Host.StopAsync();
        await Host.DisposeAsync();
    }
}

/// <summary>
/// One local cluster (3 chunk servers on 3 racks) and one driver in "all" mode as node
/// "node-a", shared by every test. Disposing removes mounts, loop devices, nbdfuse mounts,
/// helper processes, the cluster and the temp dirs, whatever state the tests left.
/// </summary>
public sealed class CsiFixture : IAsyncLifetime
{
    public const string NodeA = "node-a";

    public SwitchableTestOutput Output { get; } = new();
    public CapturingLoggerProvider Logs { get; } = new();
    public TestCluster Cluster { get; private set; } = null!;
    public TempDirectory Root { get; } = new("feitian-csi");
    public DriverInstance Driver { get; private set; } = null!;
    public CsiClient Client => Driver.Client;

    public string NodeAStateDir => Root.Combine(NodeA, "state");

    /// <summary>A client of the cluster's master, to check what the driver did there or to set up state.</summary>
    public MasterApi.Master.MasterClient Master => new(_masterChannel ??= Cluster.Launcher.Channel(Cluster.Launcher.MasterAddress));

    private GrpcChannel? _masterChannel;

    public async Task InitializeAsync()
    {
        Cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(Output, LogLevel.Warning), chunkServers: 3, racks: 3);
        Driver = await StartDriverAsync(NodeA, NodeAStateDir);
    }

    public async Task<DriverInstance> StartDriverAsync(string nodeId, string stateDir, IReadOnlyList<string>? masters = null, CsiMode mode = CsiMode.All,
        TimeSpan? masterRetry = null, SnapshotTarget? snapshotTarget = null)
    {
        var socket = Root.Combine(nodeId, $"csi-{Guid.NewGuid():N}"[..12] + ".sock");
        var options = new CsiDriverOptions
        {
            SocketPath = socket,
            Mode = mode,
            NodeId = nodeId,
            Rack = "rack-1",
            Masters = masters ?? [Cluster.Launcher.MasterAddress],
            StateDir = stateDir,
            MasterUnavailableRetry = masterRetry ?? TimeSpan.FromSeconds(10),
            SnapshotTarget = snapshotTarget,
            MetricsPort = 0,
            Tls = Cluster.Launcher.ClientTls(FeitianK8s.Core.Security.ComponentRoles.CsiController),
        };
        var host = CsiDriverHost.Create(options, logging => logging
            .AddProvider(new XunitLoggerProvider(Output, LogLevel.Information))
            .AddProvider(Logs)
            .SetMinimumLevel(LogLevel.Information));
        await host.StartAsync();
        return new DriverInstance(host, new CsiClient(socket));
    }

    /// <summary>Stops the shared driver and starts it again on the same state dir (a node plugin restart).</summary>
    public async Task RestartDriverAsync()
    {
        await Driver.DisposeAsync();
        Driver = await StartDriverAsync(NodeA, NodeAStateDir);
    }

    public async Task DisposeAsync()
    {
        try
        {
            await Driver.DisposeAsync();
        }
        finally
        {
            _masterChannel?.Dispose();
            NodeCleanup.Run(Root.Path);
            await Cluster.DisposeAsync();
            Root.Dispose();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class CsiCollection : ICollectionFixture<CsiFixture>
{
    public const string Name = "csi";
}

/// <summary>Request builders and assertions shared by the tests.</summary>
public static class Csi
{
    public const long MiB = 1024 * 1024;

    public static VolumeCapability Mount(Mode mode = Mode.SingleNodeWriter, string fsType = "ext4") => new()
    {
        Mount = new VolumeCapability.Types.MountVolume { FsType = fsType },
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static VolumeCapability Block(Mode mode = Mode.SingleNodeWriter) => new()
    {
        Block = new VolumeCapability.Types.BlockVolume(),
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static CreateVolumeRequest Create(string name, long bytes, VolumeCapability capability, long limit = 0)
    {
        var request = new CreateVolumeRequest { Name = name, CapacityRange = new CapacityRange { RequiredBytes = bytes, LimitBytes = limit } };
        request.VolumeCapabilities.Add(capability);
        return request;
    }

    public static async Task<RpcException> AssertCode(StatusCode code, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(e.StatusCode == code, $"expected {code}, got {e.StatusCode}: {e.Status.Detail}");
        return e;
    }

    /// <summary>Writes the file and makes it durable (fsync) before returning.</summary>
    public static void WriteDurably(string path, byte[] data)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        stream.Write(data);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Writes at an offset of a block device node and flushes it to the volume.</summary>
    public static void WriteDevice(string path, long offset, byte[] data)
    {
        using var device = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        device.Position = offset;
        device.Write(data);
        device.Flush(flushToDisk: true);
    }

    public static byte[] ReadDevice(string path, long offset, int length)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var buffer = new byte[length];
        var done = 0;
        while (done < length)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(done), offset + done);
            Assert.True(n > 0, $"short read at {offset + done}");
            done += n;
        }
        return buffer;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}
