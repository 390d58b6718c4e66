namespace FeitianK8s.Core.Cluster;

/// <summary>What <see cref="LocalClusterLauncher"/> starts and where.</summary>
public sealed class LocalClusterOptions
{
    /// <summary>Cluster directory: DIR/master, DIR/chunkserver-&lt;i&gt;, DIR/cluster.json.</summary>
    public required string DataDir { get; init; }

    public int ChunkServers { get; init; } = 6;

    public int Racks { get; init; } = 3;

    /// <summary>Chunk size in bytes passed to master and chunk servers; null = their default.</summary>
    public long? ChunkSize { get; init; }

    /// <summary>Master gRPC port; 0 = chosen by the OS on first start (then kept across restarts).</summary>
    public int MasterPort { get; init; }

    /// <summary>Masters forming one Raft group: 1, 3 or 5.</summary>
    public int Masters { get; init; } = 1;

    /// <summary>
    /// gRPC and Raft ports of every master from an earlier run (kept, so clients and peers
    /// keep working across restarts); empty = chosen on first start.
    /// </summary>
    public IReadOnlyList<ClusterFileMaster> PreviousMasters { get; init; } = [];

    /// <summary>Master HTTP port; 0 = chosen by the OS.</summary>
    public int MasterHttpPort { get; init; }

    /// <summary>Pinned gRPC ports of chunk servers by index (from 1); missing = chosen by the OS, then kept.</summary>
    public IReadOnlyDictionary<int, int> ChunkServerPorts { get; init; } = new Dictionary<int, int>();

    /// <summary>Folder holding FeitianK8s.Master and FeitianK8s.ChunkServer; default AppContext.BaseDirectory.</summary>
    public string? BinDirectory { get; init; }

    /// <summary>Extra arguments appended to every chunk server's command line.</summary>
    public IReadOnlyList<string> ExtraChunkServerArgs { get; init; } = [];

    /// <summary>Extra arguments appended to the master's command line.</summary>
    public IReadOnlyList<string> ExtraMasterArgs { get; init; } = [];

    /// <summary>
    /// Plain HTTP/2 between the servers (no certificates). Off by default: the launcher makes a CA and
    /// per-role certificates under DIR/tls (<see cref="Security.LocalPki"/>) and every server and client uses mutual TLS.
    /// </summary>
    public bool Insecure { get; init; }

    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
