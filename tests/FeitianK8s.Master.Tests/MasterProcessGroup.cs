using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Grpc.Net.Client;

namespace FeitianK8s.Master.Tests;

/// <summary>
/// A Raft group of real master processes (the built FeitianK8s.Master executable) on
/// 127.0.0.1, each with its own data directory and fixed gRPC and Raft ports, so a member
/// killed with SIGKILL restarts on the same addresses.
/// </summary>
public sealed class MasterProcessGroup : IAsyncDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly Process?[] _processes;
    private readonly int _snapshotEvery;

    public MasterProcessGroup(ITestOutputHelper output, int size = 3, int snapshotEvery = 10_000)
    {
        _output = output;
        _snapshotEvery = snapshotEvery;
        _processes = new Process?[size];
        DataDirectories = Enumerable.Range(0, size).Select(_ => new TempDirectory()).ToArray();
        var ports = FreePorts(2 * size, DataDirectories[0].Path);
        RaftPorts = ports.Take(size).ToArray();
        GrpcPorts = ports.Skip(size).ToArray();
        Channels = GrpcPorts.Select(p => GrpcChannel.ForAddress($"http://127.0.0.1:{p}")).ToArray();
    }

    public int Size => _processes.Length;
    public TempDirectory[] DataDirectories { get; }
    public int[] RaftPorts { get; }
    public int[] GrpcPorts { get; }
    public GrpcChannel[] Channels { get; }
    public string Address(int i) => $"http://127.0.0.1:{GrpcPorts[i]}";
    public Proto.Master.Master.MasterClient Client(int i) => new(Channels[i]);
    public bool IsRunning(int i) => _processes[i] is { HasExited: false };

    public void StartAll()
    {
        for (var i = 0; i < Size; i++)
        {
            Start(i);
        }
    }

    public void Start(int i)
    {
        var peers = string.Join(",", RaftPorts.Select(p => $"127.0.0.1:{p}"));
        var dll = Path.Combine(AppContext.BaseDirectory, "FeitianK8s.Master.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[]
        {
            dll, "--data", DataDirectories[i].Path, "--port", GrpcPorts[i].ToString(CultureInfo.InvariantCulture), "--replicas", "1",
            "--peers", peers, "--raft-endpoint", $"127.0.0.1:{RaftPorts[i]}", "--heartbeat-timeout", "5m",
            "--snapshot-every", _snapshotEvery.ToString(CultureInfo.InvariantCulture),
        })
        {
            info.ArgumentList.Add(arg);
        }
        var process = Process.Start(info)!;
        var tag = $"master-{i}";
        process.OutputDataReceived += (_, e) => Log(tag, e.Data);
        process.ErrorDataReceived += (_, e) => Log(tag, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes[i] = process;
    }

    private void Log(string tag, string? line)
    {
        if (line is null)
        {
            return;
        }
        try
        {
            _output.WriteLine($"{tag}: {line}");
        }
        catch (InvalidOperationException)
        {
            // The test already finished.
        }
    }

    /// <summary>SIGKILL; returns once the process is gone.</summary>
    public void Kill(int i)
    {
        var process = _processes[i] ?? throw new InvalidOperationException($"master {i} is not running");
        process.Kill();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException($"master {i} did not exit after SIGKILL");
        }
        process.Dispose();
        _processes[i] = null;
    }

    public async Task<MasterStatus?> StateOf(int i)
    {
        try
        {
            return await Client(i).GetMasterStateAsync(new GetMasterStateRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
        }
        catch (RpcException)
        {
            return null;
        }
    }

    /// <summary>The running member that is a ready leader (answers a linearizable read); waits up to a minute.</summary>
    public async Task<int> WaitForLeaderAsync(int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            for (var i = 0; i < Size; i++)
            {
                if (!IsRunning(i))
                {
                    continue;
                }
                try
                {
                    await Client(i).ListVolumesAsync(new ListVolumesRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                    return i;
                }
                catch (RpcException)
                {
                    // Not the leader, not ready, or not up yet.
                }
            }
            await Task.Delay(100);
        }
        throw new TimeoutException("no master became a ready leader within the deadline");
    }

    /// <summary>Runs a call on the leader, following not-leader refusals and retrying while there is none (up to a minute).</summary>
    public async Task<T> OnLeader<T>(Func<Proto.Master.Master.MasterClient, Task<T>> call, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        var target = 0;
        while (true)
        {
            try
            {
                return await call(Client(target));
            }
            catch (RpcException error) when (error.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < deadline)
            {
                var leader = FeitianStatus.LeaderOf(error);
                var hinted = leader is null ? -1 : Array.FindIndex(GrpcPorts, p => leader.EndsWith($":{p}", StringComparison.Ordinal));
                target = hinted >= 0 && hinted != target ? hinted : (target + 1) % Size;
                if (hinted < 0 || hinted == target && leader is null)
                {
                    await Task.Delay(50);
                }
            }
        }
    }

    /// <summary>
    /// Distinct ports outside the ephemeral range, reserved for <paramref name="holder"/>: the members restart on them,
    /// so neither an outgoing connection nor another test's pick may take one meanwhile.
    /// </summary>
    private static int[] FreePorts(int count, string holder)
    {
        var ports = new HashSet<int>();
        while (ports.Count < count)
        {
            ports.Add(FeitianK8s.Core.Common.ListenPorts.Pick(holder: holder));
        }
        return [.. ports];
    }

    public ValueTask DisposeAsync()
    {
        for (var i = 0; i < Size; i++)
        {
            if (_processes[i] is { } process)
            {
                try
                {
                    process.Kill();
                    process.WaitForExit(TimeSpan.FromSeconds(30));
                }
                catch (InvalidOperationException)
                {
                }
                process.Dispose();
            }
        }
        foreach (var channel in Channels)
        {
            channel.Dispose();
        }
        foreach (var dir in DataDirectories)
        {
            dir.Dispose();
        }
        return ValueTask.CompletedTask;
    }
}
