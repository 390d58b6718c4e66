using System.Diagnostics;
using System.Security.Cryptography;
using FeitianK8s.Testing;

namespace FeitianK8s.EndToEnd.Tests.Nbd;

/// <summary>
/// A real kernel filesystem on a volume: nbdfuse exposes the export as a file, losetup turns it
/// into a block device, mkfs.ext4 + mount put ext4 on it. The files must survive a full stop
/// and restart of the local cluster, and e2fsck must find the filesystem clean.
/// </summary>
public sealed class Ext4OverNbdTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Ext4_files_survive_a_cluster_restart_and_fsck_is_clean()
    {
        // A missing prerequisite is a failure with its reason, never a silent pass (test.sh installs the tools).
        var missing = MissingPrerequisite();
        Assert.True(missing is null, $"ext4-over-NBD cannot run on this machine: {missing}");
        await using var cluster = await NbdCluster.StartAsync(output);
        await cluster.CreateVolumeAsync("ext4", "128MiB");
        var mountPoint = Directory.CreateDirectory(cluster.Dir.Combine("mnt")).FullName;

        Dictionary<string, string> written;
        await using (var disk = await LoopDisk.AttachAsync(output, cluster.Up.NbdUri("ext4"), cluster.Dir.Combine("fuse1")))
        {
            await Run("mkfs.ext4", "-q", "-F", disk.Device);
            await Run("mount", disk.Device, mountPoint);
            try
            {
                written = WriteTree(mountPoint);
                await Run("sync");
            }
            finally
            {
                await Run("umount", mountPoint);
            }
        }

        await cluster.RestartAsync();

        await using (var disk = await LoopDisk.AttachAsync(output, cluster.Up.NbdUri("ext4"), cluster.Dir.Combine("fuse2")))
        {
            await Run("mount", "-o", "ro", disk.Device, mountPoint);
            Dictionary<string, string> found;
            try
            {
                found = HashTree(mountPoint);
            }
            finally
            {
                await Run("umount", mountPoint);
            }
            Assert.Equal(written.Count, found.Count);
            foreach (var (path, hash) in written)
            {
                Assert.True(found.TryGetValue(path, out var after), $"{path} is missing after the restart");
                Assert.True(hash == after, $"{path} changed across the restart");
            }
            var fsck = await ExternalTool.RunAsync(output, "e2fsck", ["-fn", disk.Device], ToolTimeout);
            Assert.True(fsck.ExitCode == 0, $"e2fsck -fn found problems (exit {fsck.ExitCode}): {fsck.StandardOutput}");
        }
        output.WriteLine($"{written.Count} files identical after the restart; e2fsck clean");
    }

    private static Dictionary<string, string> WriteTree(string root)
    {
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        var random = new Random(4242);
        for (var i = 0; i < 60; i++)
        {
            var relative = Path.Combine($"dir{i % 5}", $"sub{i % 3}", $"file{i}.bin");
            var size = i switch { 0 => 0, 1 => 1, 2 => 8 << 20, _ => random.Next(1, 600_000) };
            var data = new byte[size];
            random.NextBytes(data);
            var full = Path.Combine(root, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, data);
            hashes[relative] = Convert.ToHexString(SHA256.HashData(data));
        }
        return hashes;
    }

    private static Dictionary<string, string> HashTree(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains("lost+found", StringComparison.Ordinal))
            .ToDictionary(f => Path.GetRelativePath(root, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))), StringComparer.Ordinal);

    private Task Run(string tool, params string[] arguments) => ExternalTool.RunCheckedAsync(output, tool, arguments, ToolTimeout);

    private static string? MissingPrerequisite()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "not Linux";
        }
        if (Environment.UserName != "root")
        {
            return $"needs root for losetup and mount (running as {Environment.UserName})";
        }
        if (!File.Exists("/dev/fuse"))
        {
            return "/dev/fuse is missing (no FUSE in this kernel or container)";
        }
        foreach (var tool in new[] { "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "mount", "umount", "e2fsck" })
        {
            if (ExternalTool.Which(tool) is null)
            {
                return $"{tool} is not installed";
            }
        }
        if (!File.Exists("/dev/loop-control") && ExternalTool.Which("modprobe") is { } modprobe)
        {
            Process.Start(modprobe, "loop")?.WaitForExit(10_000);
        }
        return File.Exists("/dev/loop-control") ? null : "/dev/loop-control is missing (modprobe loop failed or not allowed)";
    }

    /// <summary>nbdfuse serving the export as DIR/disk, and a loop device over that file; detached (loop, then FUSE) on dispose.</summary>
    private sealed class LoopDisk : IAsyncDisposable
    {
        private readonly ITestOutputHelper _output;
        private readonly Process _nbdfuse;
        private readonly string _fuseDir;

        private LoopDisk(ITestOutputHelper output, Process nbdfuse, string fuseDir)
        {
            _output = output;
            _nbdfuse = nbdfuse;
            _fuseDir = fuseDir;
        }

        public string Device { get; private set; } = "";

        public static async Task<LoopDisk> AttachAsync(ITestOutputHelper output, string uri, string fuseDir)
        {
            Directory.CreateDirectory(fuseDir);
            var pidFile = fuseDir + ".pid";
            var start = new ProcessStartInfo("nbdfuse") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var argument in new[] { "-P", pidFile, Path.Combine(fuseDir, "disk"), uri })
            {
                start.ArgumentList.Add(argument);
            }
            output.WriteLine($"$ nbdfuse {string.Join(' ', start.ArgumentList)}");
            var process = Process.Start(start) ?? throw new InvalidOperationException("could not start nbdfuse");
            _ = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            var disk = new LoopDisk(output, process, fuseDir);
            var clock = Stopwatch.StartNew();
            while (!File.Exists(pidFile))
            {
                if (process.HasExited && !File.Exists(pidFile))
                {
                    throw new InvalidOperationException($"nbdfuse exited with {process.ExitCode}: {await stderr}");
                }
                if (clock.Elapsed > TimeSpan.FromSeconds(30))
                {
                    await disk.DisposeAsync();
                    throw new TimeoutException("nbdfuse did not become ready within 30 s");
                }
                await Task.Delay(50);
            }
            try
            {
                var losetup = await ExternalTool.RunCheckedAsync(output, "losetup", ["-f", "--show", Path.Combine(fuseDir, "disk")], ToolTimeout);
                disk.Device = losetup.StandardOutput.Trim();
            }
            catch
            {
                await disk.DisposeAsync();
                throw;
            }
            return disk;
        }

        public async ValueTask DisposeAsync()
        {
            if (Device.Length > 0)
            {
                await ExternalTool.RunAsync(_output, "losetup", ["-d", Device], ToolTimeout);
            }
            // The loop device lets go of the file asynchronously: retry the FUSE unmount while it is busy.
            for (var attempt = 0; attempt < 50 && !_nbdfuse.HasExited; attempt++)
            {
                var unmount = await ExternalTool.RunAsync(_output, "fusermount3", ["-u", _fuseDir], ToolTimeout);
                if (unmount.Succeeded)
                {
                    break;
                }
                await Task.Delay(200);
            }
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _nbdfuse.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                _nbdfuse.Kill();
                await ExternalTool.RunAsync(_output, "fusermount3", ["-uz", _fuseDir], ToolTimeout);
            }
            _nbdfuse.Dispose();
        }
    }
}
