namespace FeitianK8s.ChunkServer.Hosting;

/// <summary>The chunk server's stable id: generated on first start and kept in the first data dir.</summary>
internal static class ServerIdentity
{
    public const string FileName = "chunkserver-id";

    public static string LoadOrCreate(string dataDir)
    {
        var path = Path.Combine(dataDir, FileName);
        if (File.Exists(path))
        {
            var stored = File.ReadAllText(path).Trim();
            if (stored.Length == 0)
            {
                throw new InvalidDataException($"server id file {path} is empty");
            }
            return stored;
        }
        var id = "cs-" + Guid.NewGuid().ToString("N")[..12];
        AtomicFile.Write(path, id + "\n");
        return id;
    }
}

/// <summary>Writes a small file atomically and durably: temp file, fsync, rename, fsync the directory.</summary>
internal static class AtomicFile
{
    public static void Write(string path, string contents)
    {
        var tmp = path + ".tmp";
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(contents));
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        Storage.DirectorySync.Flush(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}
