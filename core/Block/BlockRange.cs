namespace FeitianK8s.Core.Block;

internal static class BlockRange
{
    /// <summary>Devices re-check ranges so a caller bug surfaces as InvalidArgument, never as a stray write.</summary>
    public static void Check(IBlockDevice device, long offset, long length, string operation)
    {
        if (offset < 0 || length < 0 || offset > device.Size || length > device.Size - offset)
            throw new BlockDeviceException(BlockErrorKind.InvalidArgument,
                $"{operation} of {length} bytes at offset {offset} is outside device '{device.Name}' of {device.Size} bytes");
    }

    public static void CheckWritable(IBlockDevice device, string operation)
    {
        if (device.ReadOnly)
            throw new BlockDeviceException(BlockErrorKind.ReadOnly, $"{operation} on read-only device '{device.Name}'");
    }
}
