using FeitianK8s.Proto.ChunkServer;

namespace FeitianK8s.ChunkServer.Services;

/// <summary>A request reader whose frames' payloads are borrowed (pooled) and must be released once the frame was applied, refused or dropped.</summary>
internal interface IFramePayloadOwner
{
    void Release(AppendFrame frame);
}
