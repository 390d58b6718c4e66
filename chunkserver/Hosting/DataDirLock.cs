namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>An exclusive lock file in every data dir, so two chunk servers never share one.</summary>
internal sealed class DataDirLock : IDisposable
{
    private readonly List<FileStream> _files;

    private DataDirLock(List<FileStream> files) => _files = files;

    public static DataDirLock Acquire(IEnumerable<string> dataDirs)
    {
        var files = new List<FileStream>();
        try
        {
            foreach (var dir in dataDirs)
            {
                Directory.CreateDirectory(dir);
                var path = Path.Combine(dir, "LOCK");
                try
                {
                    files.Add(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                }
                catch (IOException error)
                {
                    throw new IOException($"data dir {dir} is in use by another chunk server (cannot lock {path}): {error.Message}", error);
                }
            }
            return new DataDirLock(files);
        }
        catch
        {
            files.ForEach(f => f.Dispose());
            throw;
        }
    }

    public void Dispose() => _files.ForEach(f => f.Dispose());
}
