namespace FeitianK8s.ChunkServer;

/// <summary>How to run one chunk server (see Program.cs for the matching command-line flags).</summary>
public sealed record ChunkServerOptions
{
    /// <summary>Data dirs; the first also holds the server id, endpoints.json and the lock file.</summary>
    public required IReadOnlyList<string> DataDirs { get; init; }

    /// <summary>gRPC address of the master; null runs without registration (storage only).</summary>
    /// <summary>The master, or every master of a Raft group comma-separated (reports follow the leader).</summary>
    public string? MasterAddress { get; init; }

    public IReadOnlyList<string> MasterAddresses =>
        MasterAddress?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

    public string Node { get; init; } = Environment.MachineName;

    public string Rack { get; init; } = "default";

    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>gRPC port (HTTP/2 only); 0 = chosen by the OS.</summary>
    public int GrpcPort { get; init; }

    /// <summary>HTTP/1 port for /metrics and /healthz; 0 = chosen by the OS.</summary>
    public int HttpPort { get; init; }

    /// <summary>gRPC address reported to the master; default is the bound gRPC address.</summary>
    public string? AdvertiseAddress { get; init; }

    public long ChunkSize { get; init; } = 64L << 20;

    public int BlockSize { get; init; } = 4096;

    /// <summary>Capacity reported to the master; null = total size of the data dirs' filesystems.</summary>
    public long? CapacityBytes { get; init; }

    /// <summary>Space kept free on each data filesystem; appends that would use it fail with disk-full.</summary>
    public long DiskReserveBytes { get; init; } = 1L << 20;

    /// <summary>How long a pipelined append that arrived ahead of its predecessors is held before it is refused as wrong-offset.</summary>
    public TimeSpan AppendGapTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Whether the gRPC port also serves the framed append protocol (AppendStream without HTTP/2). Off, the
    /// server acts as one from before the protocol: clients fall back to the gRPC AppendStream call.
    /// </summary>
    public bool FramedAppends { get; init; } = true;

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest wait between registration attempts while the master is unreachable.</summary>
    public TimeSpan MaxRegisterBackoff { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Bandwidth all re-replication copies (CopyChunkFromPeer) share, in bytes per second; 0 = unlimited.</summary>
    public long RebuildBandwidthBytesPerSecond { get; init; }

    /// <summary>Re-replication copies that run at once; further requests wait for a free slot.</summary>
    public int RebuildConcurrency { get; init; } = DefaultRebuildConcurrency;

    public const int DefaultRebuildConcurrency = 2;

    /// <summary>Bytes per second the background scrubber reads and verifies; 0 = scrubbing off.</summary>
    public long ScrubBandwidthBytesPerSecond { get; init; } = DefaultScrubBandwidth;

    public const long DefaultScrubBandwidth = 4L << 20;

    public const int MaxRebuildConcurrency = 1024;

    /// <summary>
    /// Mutual TLS (--tls-ca/--tls-cert/--tls-key): gRPC over HTTPS, every call checked against
    /// <see cref="Core.Security.RpcRoleTable"/>; calls to the master and peers present this certificate. Null = plain.
    /// </summary>
    public Core.Security.ComponentTls? Tls { get; init; }
}
