using System.Net;
using System.Net.Sockets;
using FeitianK8s.Proto.Master;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// A Raft group of in-process masters on 127.0.0.1 with real sockets (gRPC and Raft TCP)
/// and a data directory each. Members can be stopped and started again on the same ports.
/// </summary>
public sealed class RaftGroup : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly RunningMaster?[] _members;

    private RaftGroup(ITestOutputHelper output, int size)
    {
        _output = output;
        _members = new RunningMaster?[size];
        DataDirectories = Enumerable.Range(0, size).Select(_ => new TempDirectory()).ToArray();
        RaftPorts = DataDirectories.Select(d => FreePort(d.Path)).ToArray();
        GrpcPorts = DataDirectories.Select(d => FreePort(d.Path)).ToArray();
    }

    public TempDirectory[] DataDirectories { get; }
    public int[] RaftPorts { get; }
    public int[] GrpcPorts { get; }
    public IReadOnlyList<string> Peers => RaftPorts.Select(p => $"127.0.0.1:{p}").ToList();
    public IReadOnlyList<string> GrpcAddresses => GrpcPorts.Select(p => $"http://127.0.0.1:{p}").ToList();

    public RunningMaster? this[int i] => _members[i];

    public static async Task<RaftGroup> StartAsync(ITestOutputHelper output, int size = 3, int snapshotEveryCommands = 10_000)
    {
        var group = new RaftGroup(output, size) { SnapshotEveryCommands = snapshotEveryCommands };
        await Task.WhenAll(Enumerable.Range(0, size).Select(group.StartMemberAsync));
        return group;
    }

    public async Task StartMemberAsync(int i)
    {
        _members[i] = await RunningMaster.StartAsync(DataDirectories[i].Path, _output, options => new MasterOptions
        {
            DataDirectory = options.DataDirectory,
            HeartbeatTimeout = options.HeartbeatTimeout,
            GrpcPort = GrpcPorts[i],
            RaftPeers = Peers,
            RaftEndpoint = Peers[i],
            SnapshotEveryCommands = SnapshotEveryCommands,
        });
    }

    public int SnapshotEveryCommands { get; set; } = 10_000;

    public async Task StopMemberAsync(int i)
    {
        var member = _members[i];
        _members[i] = null;
        if (member is not null)
        {
            await member.DisposeAsync();
        }
    }

    /// <summary>Index of the ready leader among running members; waits up to a minute.</summary>
    public async Task<int> WaitForLeaderAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline)
        {
            for (var i = 0; i < _members.Length; i++)
            {
                if (_members[i] is { } member && member.Host.Metadata.IsLeader)
                {
                    using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    try
                    {
                        await member.Host.Metadata.WaitForLeadershipAsync(wait.Token);
                        return i;
                    }
                    catch (Exception error) when (error is OperationCanceledException or DotNext.Net.Cluster.Consensus.Raft.QuorumUnreachableException)
                    {
                        // Lost the election meanwhile; look again.
                    }
                }
            }
            await Task.Delay(50);
        }
        throw new TimeoutException("no master became the leader within the deadline");
    }

    /// <summary>A port reserved for the member's directory: members restart on theirs, so no other test may pick one meanwhile.</summary>
    private static int FreePort(string holder) => FeitianK8s.Core.Common.ListenPorts.Pick(holder: holder);

    public async ValueTask DisposeAsync()
    {
        for (var i = 0; i < _members.Length; i++)
        {
            await StopMemberAsync(i);
        }
        foreach (var dir in DataDirectories)
        {
            dir.Dispose();
        }
    }
}
