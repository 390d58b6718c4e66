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
        _markerPath = System.IO.Path.Combine(Path, MarkerName);
        _marker = File.Exists(_markerPath) ? File.ReadAllText(_markerPath) : Guid.NewGuid().ToString("N");
        if (!File.Exists(_markerPath))
        {
            File.WriteAllText(_markerPath, _marker);
        }
    }

    /// <summary>A token file in the data dir: if it is gone or different, the dir is not the one we opened.</summary>
    public const string MarkerName = ".feitian-data-dir";
    private readonly string _markerPath;
    private readonly string _marker;

    /// <summary>Set once the directory was found gone; its chunks are no longer served.</summary>
    public bool Lost { get; private set; }

    /// <summary>
    /// Whether the data directory is still the one opened: its marker file reads back with the same token and its
    /// chunks folder exists. A directory renamed away, replaced by a file, hidden by a mount, or failing I/O fails this check (open file
    /// handles may still reach the old inode, which is why the check goes by path).
    /// </summary>
    public bool CheckPresent()
    {
        if (Lost)
        {
            return false;
        }
        try
        {
            if (File.ReadAllText(_markerPath) == _marker && Directory.Exists(ChunksPath))
            {
                return true;
            }
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
        }
        Lost = true;
        return false;
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
