using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.ChunkServer.Storage;

/// <summary>Page-cache advice for a file (posix_fadvise); a no-op off Linux.</summary>
internal static partial class PageCache
{
    private const int DontNeed = 4; // POSIX_FADV_DONTNEED on Linux

    private static int PageSize { get; } = Environment.SystemPageSize;

    /// <summary>The end of the last whole page at or below <paramref name="offset"/>.</summary>
    public static long WholePagesBelow(long offset) => offset / PageSize * PageSize;

    /// <summary>
    /// Asks the kernel to drop the clean cached pages of [offset, offset+length); dirty pages stay. Returns 0 or
    /// the error number (posix_fadvise reports it as its result, not in errno).
    /// </summary>
    public static int Drop(SafeFileHandle file, long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
        {
            return 0;
        }
        var added = false;
        try
        {
            file.DangerousAddRef(ref added);
            return Fadvise((int)file.DangerousGetHandle(), offset, length, DontNeed);
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);
}
