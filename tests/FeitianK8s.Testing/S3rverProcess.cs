using System.Diagnostics;
using System.Text.RegularExpressions;

namespace FeitianK8s.Testing;

/// <summary>
/// A real S3-compatible server (npm `s3rver`, installed by ./test.sh into tests/.s3rver) on a free
/// loopback port, storing its objects in a temp directory; killed and removed on dispose.
/// </summary>
public sealed partial class S3rverProcess : IAsyncDisposable
{
    /// <summary>s3rver's fixed credentials (it checks request signatures against them).</summary>
    public const string AccessKey = "S3RVER";
    public const string SecretKey = "S3RVER";

    private readonly Process _process;
    private readonly TempDirectory _dir;

    private S3rverProcess(Process process, TempDirectory dir, string bucket, int port)
    {
        _process = process;
        _dir = dir;
        Bucket = bucket;
        Port = port;
    }

    public string Bucket { get; }
    public int Port { get; }
    public string Endpoint => $"http://127.0.0.1:{Port}";
    public string DataDirectory => _dir.Path;

    /// <summary>The s3rver program: $S3RVER, else tests/.s3rver/node_modules/.bin/s3rver.</summary>
    public static string FindProgram()
    {
        var path = Environment.GetEnvironmentVariable("S3RVER") is { Length: > 0 } env ? env : RepositoryPaths.Combine("tests", ".s3rver", "node_modules", ".bin", "s3rver");
        return File.Exists(path) ? path : throw new FileNotFoundException(
            $"s3rver not found at {path}: run ./test.sh, or `npm install --prefix tests/.s3rver s3rver@3`", path);
    }

    /// <summary>Starts s3rver with bucket <paramref name="bucket"/> created and waits until it listens.</summary>
    public static async Task<S3rverProcess> StartAsync(ITestOutputHelper output, string bucket = "backups", TimeSpan? timeout = null)
    {
        var dir = new TempDirectory("s3rver");
        var start = new ProcessStartInfo(FindProgram())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "-d", dir.Path, "-a", "127.0.0.1", "-p", "0", "--silent", "--no-vhost-buckets", "--configure-bucket", bucket })
        {
            start.ArgumentList.Add(argument);
        }
        ExternalTool.SafeWrite(output, $"$ {start.FileName} {string.Join(' ', start.ArgumentList)}");
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {start.FileName}");
        var listening = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null && Listening().Match(e.Data) is { Success: true } m)
            {
                listening.TrySetResult(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                ExternalTool.SafeWrite(output, $"[s3rver stderr] {e.Data}");
            }
        };
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException($"s3rver exited with code {process.ExitCode} before listening"));
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var port = await listening.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
            ExternalTool.SafeWrite(output, $"s3rver (pid {process.Id}) listening on 127.0.0.1:{port}, bucket {bucket}, data in {dir.Path}");
            return new S3rverProcess(process, dir, bucket, port);
        }
        catch
        {
            KillQuietly(process);
            process.Dispose();
            dir.Dispose();
            throw;
        }
    }

    /// <summary>The files s3rver keeps the object <paramref name="key"/>'s bytes in (under its data directory).</summary>
    public string ObjectFile(string key) => Path.Combine(_dir.Path, Bucket, key + "._S3rver_object");

    /// <summary>
    /// Changes an object's bytes behind the server's back and updates the MD5 it keeps (its ETag),
    /// as a store that damaged data without noticing would serve it: only the reader's own hash check can tell.
    /// </summary>
    public async Task ReplaceObjectBytesAsync(string key, byte[] bytes)
    {
        var file = ObjectFile(key);
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"s3rver holds no object {key}", file);
        }
        await File.WriteAllBytesAsync(file, bytes);
        await File.WriteAllTextAsync(file + ".md5", Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(bytes)));
    }

    public async ValueTask DisposeAsync()
    {
        KillQuietly(_process);
        await _process.WaitForExitAsync();
        _process.Dispose();
        _dir.Dispose();
    }

    private static void KillQuietly(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already exited
        }
    }

    [GeneratedRegex(@"S3rver listening on [^:]+:(\d+)")]
    private static partial Regex Listening();
}
