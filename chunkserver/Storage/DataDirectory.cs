namespace FeitianK8s.ChunkServer.Storage;

/// <summary>One data dir: its chunks folder and the filesystem it sits on.</summary>
internal sealed class DataDirectory
{
    public DataDirectory(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        ChunksPath = System.IO.Path.Combine(Path, ChunkFiles.SubDirectory);
        Directory.CreateDirectory(ChunksPath);
        MountPoint = FindMountPoint(Path);
    }

    public string Path { get; }

    public string ChunksPath { get; }

    /// <summary>Mount point of the filesystem holding this dir (to count each filesystem's capacity once).</summary>
    public string MountPoint { get; }

    /// <summary>Bytes an unprivileged writer may still use on this filesystem (statvfs).</summary>
    public long AvailableBytes => new DriveInfo(ChunksPath).AvailableFreeSpace;

    public long TotalBytes => new DriveInfo(ChunksPath).TotalSize;

    private static string FindMountPoint(string path)
    {
        var best = System.IO.Path.GetPathRoot(path) ?? "/";
        foreach (var drive in DriveInfo.GetDrives())
        {
            var mount = drive.Name.TrimEnd('/');
            var isUnder = path == mount || path.StartsWith(mount + "/", StringComparison.Ordinal);
            if (isUnder && drive.Name.Length > best.Length)
            {
                best = drive.Name;
            }
        }
        return best;
    }
}
