using FeitianK8s.Core.Block;

namespace FeitianK8s.Core.Nbd;

/// <summary>
/// Checks a request against the export before anything touches the device. Error choices follow
/// the spec's "Error values": unknown command or flag → EINVAL; write or trim on a read-only export
/// → EPERM; a write (WRITE, WRITE_ZEROES) reaching past the end → ENOSPC; a read or trim past the
/// end → EINVAL; a READ/WRITE longer than the advertised maximum payload → EINVAL.
/// TRIM and WRITE_ZEROES carry no payload, so the maximum does not limit them.
/// </summary>
public static class NbdRequestValidator
{
    public static NbdError Validate(in NbdRequest request, IBlockDevice device, uint maximumPayload)
    {
        // FUA is accepted on every command (clients are known to set it on reads); FUA only changes writes.
        NbdCommandFlags allowed = request.Command switch
        {
            NbdCommand.WriteZeroes => NbdCommandFlags.Fua | NbdCommandFlags.NoHole,
            NbdCommand.Read or NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim => NbdCommandFlags.Fua,
            _ => NbdCommandFlags.None,
        };
        switch (request.Command)
        {
            case NbdCommand.Read:
            case NbdCommand.Write:
            case NbdCommand.Flush:
            case NbdCommand.Trim:
            case NbdCommand.WriteZeroes:
                break;
            default:
                return NbdError.Inval;
        }
        if ((request.Flags & ~allowed) != 0)
            return NbdError.Inval;

        bool writes = request.Command is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes;
        if (writes && device.ReadOnly)
            return NbdError.Perm;

        if (request.Command == NbdCommand.Flush)
            return request.Offset == 0 && request.Length == 0 ? NbdError.None : NbdError.Inval;

        if (request.Command is NbdCommand.Read or NbdCommand.Write && request.Length > maximumPayload)
            return NbdError.Inval;

        ulong size = (ulong)device.Size;
        bool inRange = request.Offset <= size && request.Length <= size - request.Offset;
        if (!inRange)
            return request.Command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpc : NbdError.Inval;
        return NbdError.None;
    }
}

/// <summary>Maps what a device throws onto the NBD error values.</summary>
public static class NbdErrorMapper
{
    /// <summary>
    /// Io → EIO, NoSpace → ENOSPC, InvalidArgument → EINVAL, ReadOnly → EPERM. Fenced → EIO: the
    /// spec has no "lost the lease" error, and EIO makes the client (kernel, qemu) fail the I/O
    /// without retrying against a writer that can never succeed again. Cancellation during server
    /// shutdown → ESHUTDOWN; anything else → EIO.
    /// </summary>
    public static NbdError Map(Exception exception) => exception switch
    {
        BlockDeviceException { Kind: BlockErrorKind.Io } => NbdError.Io,
        BlockDeviceException { Kind: BlockErrorKind.NoSpace } => NbdError.NoSpc,
        BlockDeviceException { Kind: BlockErrorKind.InvalidArgument } => NbdError.Inval,
        BlockDeviceException { Kind: BlockErrorKind.ReadOnly } => NbdError.Perm,
        BlockDeviceException { Kind: BlockErrorKind.Fenced } => NbdError.Io,
        OperationCanceledException => NbdError.Shutdown,
        _ => NbdError.Io,
    };
}
