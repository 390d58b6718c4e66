using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>Page-cache advice for a file (posix_fadvise, sync_file_range); a no-op off Linux.</summary>
internal static partial class PageCache
{
    private const int DontNeed = 4; // POSIX_FADV_DONTNEED on Linux
    private const uint WriteFlag = 2; // SYNC_FILE_RANGE_WRITE: start writeback of dirty pages, do not wait

    private static int PageSize { get; } = Environment.SystemPageSize;

    /// <summary>The end of the last whole page at or below <paramref name="offset"/>.</summary>
    public static long WholePagesBelow(long offset) => offset / PageSize * PageSize;

    /// <summary>
    /// Asks the kernel to drop the clean cached pages of [offset, offset+length); dirty pages stay. Returns 0 or
    /// the error number (posix_fadvise reports it as its result, not in errno).
    /// </summary>
    public static int Drop(SafeFileHandle file, long offset, long length) =>
        OperatingSystem.IsLinux() && length > 0
            ? OnDescriptor(file, fd => Fadvise(fd, offset, length, DontNeed))
            : 0;

    /// <summary>
    /// Starts writing the dirty pages of [offset, offset+length) to disk without waiting for them
    /// (sync_file_range with SYNC_FILE_RANGE_WRITE). Durability still needs an fdatasync; this only
    /// spreads the disk writes so a later fdatasync finds little left to do. Returns 0 or the errno.
    /// </summary>
    public static int StartWriteback(SafeFileHandle file, long offset, long length) =>
        OperatingSystem.IsLinux() && length > 0
            ? OnDescriptor(file, fd => SyncFileRange(fd, offset, length, WriteFlag) == 0 ? 0 : Marshal.GetLastPInvokeError())
            : 0;

    /// <summary>Runs a libc call on the file's descriptor, which stays open (referenced) meanwhile.</summary>
    private static int OnDescriptor(SafeFileHandle file, Func<int, int> call)
    {
        var added = false;
        try
        {
            file.DangerousAddRef(ref added);
            return call((int)file.DangerousGetHandle());
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(int fd, long offset, long length, uint flags);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);
}
