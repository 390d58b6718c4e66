using System.Buffers.Binary;
using System.Net;
using System.Text;
using DotNext.Buffers;
using DotNext.Net.Cluster.Consensus.Raft.Membership;

namespace FeitianK8s.Master.Raft;

/// <summary>
/// The Raft group's membership: fixed by the command line (--peers), kept in memory and
/// encoded as host:port strings when DotNext exchanges it.
/// </summary>
internal sealed class EndPointConfigurationStorage : InMemoryClusterConfigurationStorage<EndPoint>
{
    protected override void Encode(EndPoint address, ref BufferWriterSlim<byte> output)
    {
        var text = Encoding.UTF8.GetBytes(RaftPeers.Format(address));
        Span<byte> length = stackalloc byte[sizeof(int)];
        BinaryPrimitives.WriteInt32LittleEndian(length, text.Length);
        output.Write(length);
        output.Write(text);
    }

    protected override EndPoint Decode(ref SequenceReader reader)
    {
        Span<byte> length = stackalloc byte[sizeof(int)];
        reader.Read(length);
        var text = new byte[BinaryPrimitives.ReadInt32LittleEndian(length)];
        reader.Read(text);
        return RaftPeers.ParseEndPoint(Encoding.UTF8.GetString(text));
    }
}
