namespace FeitianK8s.ChunkServer.Storage;

internal static class DiskErrors
{
    private const int Enospc = 28;
    private const int Edquot = 122;
    private const int WindowsDiskFull = 112;

    /// <summary>True when an I/O error means "no space left" (ENOSPC / EDQUOT). .NET puts errno in HResult on Unix.</summary>
    public static bool IsDiskFull(IOException error) =>
        error.HResult is Enospc or Edquot || (error.HResult & 0xFFFF) == WindowsDiskFull;
}
