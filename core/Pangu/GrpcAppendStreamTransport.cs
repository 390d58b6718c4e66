using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;

namespace FeitianK8s.Core.Pangu;

/// <summary>An AppendStream as the gRPC duplex call (HTTP/2).</summary>
internal sealed class GrpcAppendStreamTransport(ChunkServer.ChunkServerClient client) : IAppendStreamTransport
{
    private readonly AsyncDuplexStreamingCall<AppendStreamRequest, AppendStreamResponse> _call = client.AppendStream();

    public Task WriteAsync(AppendStreamRequest message) => _call.RequestStream.WriteAsync(message);

    public Task CompleteAsync() => _call.RequestStream.CompleteAsync();

    public async Task<AppendStreamResponse?> ReadAsync() =>
        await _call.ResponseStream.MoveNext(CancellationToken.None).ConfigureAwait(false) ? _call.ResponseStream.Current : null;

    public void Dispose() => _call.Dispose();
}
