using System.Net;

namespace FeitianK8s.Core.Nbd;

public sealed class NbdServerOptions
{
    /// <summary>Address of the TCP listener; loopback by default.</summary>
    public IPAddress TcpAddress { get; set; } = IPAddress.Loopback;

    /// <summary>TCP port; 0 lets the OS choose (see <see cref="NbdServer.TcpEndPoint"/>), null disables TCP.</summary>
    public int? TcpPort { get; set; } = 0;

    /// <summary>Path of a unix socket to listen on as well; null disables it.</summary>
    public string? UnixSocketPath { get; set; }

    /// <summary>Export served when a client asks for the empty ("default") name; null means none.</summary>
    public string? DefaultExportName { get; set; }

    /// <summary>Advertised minimum block size (power of two, 1..64 KiB). The server accepts any byte-aligned request.</summary>
    public uint MinimumBlockSize { get; set; } = 1;

    /// <summary>Advertised preferred block size (power of two, at least 512).</summary>
    public uint PreferredBlockSize { get; set; } = 4096;

    /// <summary>Largest READ or WRITE payload accepted; larger ones get EINVAL (a WRITE also closes the connection).</summary>
    public uint MaximumPayloadSize { get; set; } = 32 * 1024 * 1024;

    /// <summary>Largest option data accepted during the handshake; more is treated as abuse and closes the connection.</summary>
    public int MaximumOptionLength { get; set; } = 64 * 1024;

    /// <summary>A connection that has not finished option haggling by then is closed.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests processed concurrently per connection; the reader stops reading beyond this.</summary>
    public int MaxInFlightRequests { get; set; } = 64;

    /// <summary>Payload and read-buffer bytes held concurrently per connection (one request may always exceed it alone).</summary>
    public long MaxInFlightBytes { get; set; } = 64 * 1024 * 1024;

    internal void Validate()
    {
        if (TcpPort is null && UnixSocketPath is null)
            throw new ArgumentException("NBD server needs a TCP port or a unix socket path");
        if (TcpPort is < 0 or > 65535)
            throw new ArgumentException($"NBD TCP port {TcpPort} out of range");
        if (MinimumBlockSize == 0 || MinimumBlockSize > 65536 || !uint.IsPow2(MinimumBlockSize))
            throw new ArgumentException($"NBD minimum block size {MinimumBlockSize} must be a power of two in 1..65536");
        if (PreferredBlockSize < 512 || PreferredBlockSize < MinimumBlockSize || !uint.IsPow2(PreferredBlockSize))
            throw new ArgumentException($"NBD preferred block size {PreferredBlockSize} must be a power of two >= 512 and >= the minimum");
        if (MaximumPayloadSize < MinimumBlockSize || MaximumPayloadSize % MinimumBlockSize != 0 || MaximumPayloadSize > int.MaxValue - NbdProtocol.SimpleReplyHeaderLength)
            throw new ArgumentException($"NBD maximum payload size {MaximumPayloadSize} must be a multiple of the minimum block size");
        if (MaxInFlightRequests < 1 || MaxInFlightBytes < 1 || MaximumOptionLength < NbdProtocol.MaxStringLength + 8)
            throw new ArgumentException("NBD in-flight limits and option length must be positive");
    }
}
