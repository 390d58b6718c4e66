using FeitianK8s.Proto.ChunkServer;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// The client side of one AppendStream (one open chunk, one replica): messages out, answers in. Either the
/// gRPC AppendStream call or the framed append protocol on the same port; both end with the status the
/// server gave, as an <see cref="Grpc.Core.RpcException"/>.
/// </summary>
internal interface IAppendStreamTransport : IDisposable
{
    /// <summary>Sends one message; called by one writer at a time (the previous write completed).</summary>
    Task WriteAsync(AppendStreamRequest message);

    /// <summary>No more messages: the server answers what it holds, then ends.</summary>
    Task CompleteAsync();

    /// <summary>The next answer; null when the server ended the stream cleanly. A refusal or a broken connection throws.</summary>
    Task<AppendStreamResponse?> ReadAsync();
}
