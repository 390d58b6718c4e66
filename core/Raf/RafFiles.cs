using System.Globalization;
using System.Text;
using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>
/// Small whole files of RAF metadata (snapshots, pins, shared-segment maps): written under a
/// dot-name and renamed into place, so a file under its real name is always complete; text
/// files end with a CRC32C line, so a damaged one is never mistaken for a shorter valid one.
/// </summary>
public static class RafFiles
{
    private const string CrcPrefix = "crc32c ";

    /// <summary>The file's bytes, or null when it does not exist.</summary>
    public static async Task<byte[]?> TryReadAllAsync(IPanguFileSystem fs, string path, CancellationToken ct)
    {
        IPanguReader reader;
        try
        {
            reader = await fs.OpenForReadAsync(path, ct);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
            return null;
        }
        await using (reader)
        {
            var bytes = new byte[reader.Length];
            var at = 0;
            while (at < bytes.Length)
            {
                var read = await reader.ReadAsync(at, bytes.AsMemory(at), ct);
                if (read <= 0)
                {
                    return bytes[..at];
                }
                at += read;
            }
            return bytes;
        }
    }

    /// <summary>Writes <paramref name="bytes"/> durably to <c>.name.tmp</c> beside <paramref name="path"/>, then renames it over <paramref name="path"/>.</summary>
    public static async Task WriteAtomicallyAsync(IPanguFileSystem fs, string path, byte[] bytes, int replicas, PanguVolumeGuard? guard, CancellationToken ct)
    {
        var slash = path.LastIndexOf('/');
        var temp = $"{path[..(slash + 1)]}.{path[(slash + 1)..]}.tmp";
        await DeleteIfExistsAsync(fs, temp, guard, ct);
        await fs.CreateAsync(temp, replicas, guard, ct);
        var appender = await fs.OpenForAppendAsync(temp, guard, ct);
        await using (appender)
        {
            const int piece = 4 << 20;
            for (var at = 0; at < bytes.Length; at += piece)
            {
                var part = bytes.AsMemory(at, Math.Min(piece, bytes.Length - at));
                await appender.AppendAsync(part, durable: at + part.Length == bytes.Length, ct);
            }
            await appender.CloseAsync(ct);
        }
        await DeleteIfExistsAsync(fs, path, guard, ct);
        await fs.RenameAsync(temp, path, ct);
    }

    public static async Task DeleteIfExistsAsync(IPanguFileSystem fs, string path, PanguVolumeGuard? guard, CancellationToken ct)
    {
        try
        {
            await fs.DeleteAsync(path, guard, ct);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
        }
    }

    /// <summary>Names of the complete files in a directory (temporary dot-files left out); none when it does not exist.</summary>
    public static async Task<List<string>> ListNamesAsync(IPanguFileSystem fs, string directory, CancellationToken ct)
    {
        try
        {
            var entries = await fs.ListAsync(directory, ct: ct);
            return entries.Where(e => !e.IsDirectory)
                .Select(e => e.Path[(e.Path.LastIndexOf('/') + 1)..])
                .Where(n => !n.StartsWith('.'))
                .Order(StringComparer.Ordinal)
                .ToList();
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
            return [];
        }
    }

    public static byte[] SealText(IEnumerable<string> lines)
    {
        var body = new StringBuilder();
        foreach (var line in lines)
        {
            body.Append(line).Append('\n');
        }
        var text = body.ToString();
        var crc = Crc32C.Compute(Encoding.UTF8.GetBytes(text));
        return Encoding.UTF8.GetBytes(text + CrcPrefix + crc.ToString("x8", CultureInfo.InvariantCulture) + "\n");
    }

    /// <summary>The lines of a sealed text file, or null when its CRC line is missing or wrong.</summary>
    public static List<string>? OpenText(byte[] bytes)
    {
        var text = Encoding.UTF8.GetString(bytes);
        var last = text.LastIndexOf(CrcPrefix, StringComparison.Ordinal);
        if (last < 0 || (last > 0 && text[last - 1] != '\n') || !text.EndsWith('\n'))
        {
            return null;
        }
        var body = text[..last];
        if (!uint.TryParse(text.AsSpan(last + CrcPrefix.Length).TrimEnd('\n'), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var crc)
            || crc != Crc32C.Compute(Encoding.UTF8.GetBytes(body)))
        {
            return null;
        }
        return body.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
    }
}
