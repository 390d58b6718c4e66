namespace FeitianK8s.Core.Nbd;

/// <summary>
/// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). All integers
/// on the wire are big-endian.
/// </summary>
public static class NbdProtocol
{
    public const ulong InitPasswd = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;

    public const int RequestHeaderLength = 28;
    public const int SimpleReplyHeaderLength = 16;
    public const int OptionHeaderLength = 16;
    /// <summary>Strings (export names) MUST be no longer than 4096 bytes.</summary>
    public const int MaxStringLength = 4096;
}

/// <summary>Handshake flags (server, 16 bits).</summary>
[Flags]
public enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags (32 bits). Any other bit makes the server drop the connection.</summary>
[Flags]
public enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Transmission flags (16 bits).</summary>
[Flags]
public enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

public enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

public enum NbdOptionReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsup = 0x80000000 + 1,
    ErrPolicy = 0x80000000 + 2,
    ErrInvalid = 0x80000000 + 3,
    ErrPlatform = 0x80000000 + 4,
    ErrTlsReqd = 0x80000000 + 5,
    ErrUnknown = 0x80000000 + 6,
    ErrShutdown = 0x80000000 + 7,
    ErrBlockSizeReqd = 0x80000000 + 8,
    ErrTooBig = 0x80000000 + 9,
}

public enum NbdInfoType : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
    Resize = 8,
}

[Flags]
public enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    Df = 1 << 2,
    ReqOne = 1 << 3,
    FastZero = 1 << 4,
    PayloadLen = 1 << 5,
}

/// <summary>The only error values the protocol allows in a reply.</summary>
public enum NbdError : uint
{
    None = 0,
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}
