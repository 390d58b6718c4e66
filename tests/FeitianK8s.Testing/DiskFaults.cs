using System.Globalization;
using System.Runtime.InteropServices;

namespace FeitianK8s.Testing;

/// <summary>
/// Corrupts real files behind a running server's back, through plain open/pread/pwrite
/// so that .NET's advisory file locks held by the server do not get in the way.
/// </summary>
public static partial class DiskFaults
{
    private const int ReadOnly = 0;
    private const int ReadWrite = 2;

    /// <summary>Inverts every bit of the byte at offset. Returns the original value.</summary>
    public static byte FlipByte(string path, long offset)
    {
        var fd = Open(path, ReadWrite);
        if (fd < 0)
        {
            throw new IOException($"open {path} failed: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            byte value = 0;
            if (PRead(fd, ref value, 1, offset) != 1)
            {
                throw new IOException($"pread {path} at {offset} failed: errno {Marshal.GetLastPInvokeError()}");
            }
            var flipped = (byte)~value;
            if (PWrite(fd, ref flipped, 1, offset) != 1)
            {
                throw new IOException($"pwrite {path} at {offset} failed: errno {Marshal.GetLastPInvokeError()}");
            }
            return value;
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>Reads the byte at offset the same way <see cref="FlipByte"/> writes it, to prove a fault reached the disk.</summary>
    public static byte ReadByte(string path, long offset)
    {
        var fd = Open(path, ReadOnly);
        if (fd < 0)
        {
            throw new IOException($"open {path} failed: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            byte value = 0;
            if (PRead(fd, ref value, 1, offset) != 1)
            {
                throw new IOException($"pread {path} at {offset} failed: errno {Marshal.GetLastPInvokeError()}");
            }
            return value;
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>Finds the data file of a chunk under a chunk server's data dir (DIR/**/chunks/&lt;id as 16 hex digits&gt;.data).</summary>
    public static string? FindChunkDataFile(string chunkServerDataDir, ulong chunkId)
    {
        var name = chunkId.ToString("x16", CultureInfo.InvariantCulture) + ".data";
        return Directory.EnumerateFiles(chunkServerDataDir, name, SearchOption.AllDirectories).FirstOrDefault();
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "pread", SetLastError = true)]
    private static partial nint PRead(int fd, ref byte buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    private static partial nint PWrite(int fd, ref byte buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
