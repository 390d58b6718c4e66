using System.Net.Sockets;
using Grpc.Net.Client;
using CsiController = FeitianK8s.Proto.Csi.Controller;
using CsiIdentity = FeitianK8s.Proto.Csi.Identity;
using CsiNode = FeitianK8s.Proto.Csi.Node;

namespace FeitianK8s.Csi.Tests;

/// <summary>A real gRPC client of the driver over its unix socket, as the CSI sidecars and kubelet connect.</summary>
public sealed class CsiClient : IDisposable
{
    private readonly GrpcChannel _channel;

    public CsiClient(string socketPath)
    {
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
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
        Identity = new CsiIdentity.IdentityClient(_channel);
        Controller = new CsiController.ControllerClient(_channel);
        Node = new CsiNode.NodeClient(_channel);
    }

    public CsiIdentity.IdentityClient Identity { get; }
    public CsiController.ControllerClient Controller { get; }
    public CsiNode.NodeClient Node { get; }

    public void Dispose() => _channel.Dispose();
}
