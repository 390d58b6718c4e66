using FeitianK8s.Proto.Master;

namespace FeitianK8s.Core.Pangu;

/// <summary>Converts the master's wire messages into the file-system records.</summary>
public static class ProtoMapping
{
    public static PanguReplica ToReplica(ReplicaLocation r) => new(r.ChunkServerId, r.Node, r.Rack, r.Address, r.Bad);

    public static PanguChunk ToChunk(ChunkLocation c) =>
        new(c.ChunkId, checked((long)c.FileOffset), checked((long)c.Length), c.Sealed, c.PlacementDegraded, c.Replicas.Select(ToReplica).ToArray());

    public static PanguFileInfo ToFileInfo(Proto.Master.FileInfo f) =>
        new(f.Path, checked((long)f.Length), (int)f.Replicas, f.Epoch, f.Chunks.Select(ToChunk).ToArray());

    public static PanguDirectoryEntry ToEntry(DirectoryEntry e) => new(e.Path, e.IsDirectory, checked((long)e.Length));
}
