namespace FeitianK8s.Core.Pangu;

/// <summary>How a <see cref="PanguClient"/> finds the cluster and how patient it is.</summary>
public sealed class PanguClientOptions
{
    /// <summary>gRPC addresses of the masters, e.g. "http://127.0.0.1:9000"; tried in order.</summary>
    public IReadOnlyList<string> MasterAddresses { get; init; } = [];

    /// <summary>Node this client runs on: preferred for the first replica and for reads.</summary>
    public string ClientNode { get; init; } = "";

    /// <summary>Largest data payload of one chunk-server append or read call.</summary>
    public int MaxRpcDataBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// Appends of one file in flight at once to its open chunk (pipelining); the chunk servers apply them in
    /// offset order and a write is acknowledged only once every replica holds every byte up to its end. 1 = one at a time.
    /// </summary>
    public int MaxAppendsInFlight { get; init; } = 8;

    /// <summary>
    /// Appends go as frames of one long-lived AppendStream per open chunk and replica (true), or as one
    /// unary Append call each (false). Same rules and guarantees either way; a chunk server without
    /// AppendStream is sent unary calls.
    /// </summary>
    public bool AppendStreams { get; init; } = true;

    /// <summary>
    /// With <see cref="AppendStreams"/>: the streams use the framed append protocol on the chunk server's gRPC
    /// port (true; its own connection per stream, no HTTP/2 layer) or the gRPC AppendStream call (false). A chunk
    /// server that does not speak the framed protocol is sent the gRPC call.
    /// </summary>
    public bool FramedAppendStreams { get; init; } = true;

    /// <summary>
    /// With <see cref="AppendStreams"/>: every replica but the one this client reads first
    /// (<see cref="ChunkReader.FirstToRead"/>) is asked to drop appended bytes from its page cache once they are
    /// durable, so memory goes to data that is read. Reads of those replicas (after a failure) come from disk.
    /// </summary>
    public bool DropBehindUnreadReplicas { get; init; } = true;

    /// <summary>Deadline of one chunk-server call (and of one append frame's answer).</summary>
    public TimeSpan ChunkServerTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Deadline of one master call.</summary>
    public TimeSpan MasterTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a master-dependent step (open, allocate, commit, seal, lease) waits and retries while no
    /// master answers (restart, election, network) before it fails: the `--master-wait` flag, default 60 s.
    /// </summary>
    public TimeSpan MasterUnavailableRetry { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Replica failures an append absorbs in a row (seal, new chunk, retry) before it gives up.</summary>
    public int MaxConsecutiveReplicaFailures { get; init; } = 12;

    /// <summary>How long a failed chunk server is excluded from new chunks of an appender.</summary>
    public TimeSpan FailedServerExclusion { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Chunk servers on this node whose files this client may read directly (gRPC address → data
    /// directory); reads still verify every block's CRC32C and fall back to the chunk server. Empty: off.
    /// </summary>
    public IReadOnlyDictionary<string, string> LocalChunkServerDataDirs { get; init; } = new Dictionary<string, string>();

    /// <summary>gRPC message size limit for sends and receives (above the 4 MiB default).</summary>
    public int MaxMessageBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>This client's certificate and the CA it trusts; null = plain HTTP/2 (a cluster without TLS).</summary>
    public Security.ComponentTls? Tls { get; init; }
}
