using System.Net.Sockets;
using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.VolumeHost;
using Grpc.Core;
using Grpc.Net.Client;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Helpers run by the node's volume-host agent (<c>--volume-host-agent PATH</c>), over gRPC on its
/// unix socket. An agent that does not answer within <see cref="CallTimeout"/> is an Unavailable
/// error, never "not running".
/// </summary>
public sealed class AgentVolumeHostLauncher : IVolumeHostLauncher, IDisposable
{
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(20);
    private readonly string _socketPath;
    private readonly GrpcChannel _channel;
    private readonly VolumeHostAgent.VolumeHostAgentClient _client;

    public AgentVolumeHostLauncher(string socketPath)
    {
        _socketPath = socketPath;
        _channel = CreateChannel(socketPath);
        _client = new VolumeHostAgent.VolumeHostAgentClient(_channel);
    }

    /// <summary>A gRPC channel to the agent's unix socket.</summary>
    public static GrpcChannel CreateChannel(string socketPath) =>
        GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, ct) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                        return new NetworkStream(socket, ownsSocket: true);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                },
            },
        });

    public async Task<int> StartAsync(HelperSpec spec, CancellationToken ct)
    {
        var status = await CallAsync("start", c => c.StartHelperAsync(new StartHelperRequest
        {
            VolumeId = spec.VolumeId,
            Kind = spec.Kind.Name(),
            SocketPath = spec.SocketPath,
            FuseDir = spec.FuseDir,
            ReadOnly = spec.ReadOnly,
            LogFile = spec.LogFile,
        }, Options(ct)).ResponseAsync);
        return status.Pid;
    }

    public async Task<HelperState> GetAsync(StagedVolume record, HelperKind kind, CancellationToken ct)
    {
        try
        {
            var status = await CallAsync("get", c => c.GetHelperAsync(new HelperRef { VolumeId = record.VolumeId, Kind = kind.Name() }, Options(ct)).ResponseAsync);
            return new HelperState(status.Pid, status.State == "running", status.State == "exited" ? status.ExitCode : null);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return new HelperState(0, false);
        }
    }

    public Task StopAsync(StagedVolume record, HelperKind kind, TimeSpan grace, CancellationToken ct) =>
        CallAsync("stop", c => c.StopHelperAsync(new StopHelperRequest { VolumeId = record.VolumeId, Kind = kind.Name(), GraceSeconds = grace.TotalSeconds },
            Options(ct, grace + CallTimeout)).ResponseAsync);

    private static CallOptions Options(CancellationToken ct, TimeSpan? timeout = null) =>
        new CallOptions(deadline: DateTime.UtcNow + (timeout ?? CallTimeout), cancellationToken: ct).WithWaitForReady();

    private async Task<T> CallAsync<T>(string what, Func<VolumeHostAgent.VolumeHostAgentClient, Task<T>> call)
    {
        try
        {
            return await call(_client);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            throw CsiErrors.Unavailable($"the volume-host agent at {_socketPath} did not answer ({what}): {e.Status.Detail}");
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.FailedPrecondition)
        {
            throw CsiErrors.Internal($"the volume-host agent at {_socketPath} refused to {what} a helper: {e.Status.Detail}");
        }
    }

    public void Dispose() => _channel.Dispose();
}
