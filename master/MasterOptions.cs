namespace FeitianK8s.Master;

public sealed class MasterOptions
{
    /// <summary>Directory of the command log and snapshots.</summary>
    public required string DataDirectory { get; init; }
    public string ListenAddress { get; init; } = "127.0.0.1";
    /// <summary>gRPC port (HTTP/2 only); 0 = chosen by the OS.</summary>
    public int GrpcPort { get; init; }
    /// <summary>Port of /metrics and /healthz (HTTP/1); 0 = chosen by the OS.</summary>
    public int HttpPort { get; init; }
    public ulong ChunkSizeBytes { get; init; } = 64UL * 1024 * 1024;
    public int DefaultReplicas { get; init; } = 3;
    /// <summary>A chunk server is alive while its last heartbeat is younger than this.</summary>
    public TimeSpan HeartbeatTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// After a start or leader change, how long registered chunk servers are waited for before
    /// allocation counts them as dead (ends early once all reported); null = <see cref="HeartbeatTimeout"/>.
    /// </summary>
    public TimeSpan? ReportGrace { get; init; }
    /// <summary>A chunk server without a heartbeat for this long is dead: its replicas are rebuilt elsewhere.</summary>
    public TimeSpan DeadAfter { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Re-replication copies running at once, cluster-wide.</summary>
    public int MaxRebuilds { get; init; } = DefaultMaxRebuilds;
    public const int DefaultMaxRebuilds = 12;
    /// <summary>Whether this master leads (runs the re-replication scheduler); a single master always does.</summary>
    public Func<bool> IsLeader { get; init; } = () => true;
    /// <summary>A snapshot is written after this many logged commands (and on clean shutdown).</summary>
    public int SnapshotEveryCommands { get; init; } = 10_000;
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>Every master's Raft endpoint (host:port); empty = a group of this master alone.</summary>
    public IReadOnlyList<string> RaftPeers { get; init; } = [];
    /// <summary>This master's own Raft endpoint, one of <see cref="RaftPeers"/>; required with peers.</summary>
    public string? RaftEndpoint { get; init; }
    /// <summary>Raft port of a master without peers; 0 = chosen at start.</summary>
    public int RaftPort { get; init; }
    /// <summary>The gRPC address other masters give clients for this one (default: the bound address).</summary>
    public string? AdvertiseAddress { get; init; }
    /// <summary>
    /// The HTTP address (web console, metrics) followers redirect browsers to when this master leads
    /// (default: the host of <see cref="AdvertiseAddress"/>, else the bound address, with the HTTP port).
    /// </summary>
    public string? AdvertiseHttpAddress { get; init; }
    /// <summary>
    /// Mutual TLS (--tls-ca/--tls-cert/--tls-key): gRPC over HTTPS with a client certificate of the
    /// cluster CA checked per call against <see cref="Core.Security.RpcRoleTable"/>, and the Raft
    /// transport over TLS between master certificates. Null = plain, any caller admitted.
    /// </summary>
    public Core.Security.ComponentTls? Tls { get; init; }

    /// <summary>
    /// The backup target the web console lists (/api/backups), null = none; read-only use,
    /// credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when the listing runs.
    /// </summary>
    public Web.ConsoleBackupTarget? BackupTarget { get; init; }

    /// <summary>Lower bound of the Raft election timeout (the upper bound is twice it).</summary>
    public TimeSpan ElectionTimeout { get; init; } = TimeSpan.FromMilliseconds(500);

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(DataDirectory))
        {
            throw new ArgumentException("a data directory is required");
        }
        if (ChunkSizeBytes == 0)
        {
            throw new ArgumentException("chunk size must be positive");
        }
        if (DefaultReplicas is < 1 or > (int)State.MasterStateMachine.MaxReplicas)
        {
            throw new ArgumentException($"replicas must be between 1 and {State.MasterStateMachine.MaxReplicas}");
        }
        if (HeartbeatTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("heartbeat timeout must be positive");
        }
        if (DeadAfter <= TimeSpan.Zero)
        {
            throw new ArgumentException("--dead-after must be positive");
        }
        if (MaxRebuilds is < 1 or > 10_000)
        {
            throw new ArgumentException("--max-rebuilds must be from 1 to 10000");
        }
        if (SnapshotEveryCommands < 1)
        {
            throw new ArgumentException("snapshot-every must be at least 1");
        }
        if (RaftPeers.Count > 0 && string.IsNullOrWhiteSpace(RaftEndpoint))
        {
            throw new ArgumentException("--raft-endpoint (this master's own Raft endpoint) is required with --peers");
        }
        if (ElectionTimeout < TimeSpan.FromMilliseconds(50))
        {
            throw new ArgumentException("election timeout must be at least 50ms");
        }
        if (GrpcPort is < 0 or > 65535 || HttpPort is < 0 or > 65535 || RaftPort is < 0 or > 65535)
        {
            throw new ArgumentException("ports must be between 0 and 65535");
        }
    }
}

/// <summary>The addresses this master serves on, known once Kestrel has bound.</summary>
public sealed class MasterIdentity
{
    public string GrpcAddress { get; set; } = "";
}
