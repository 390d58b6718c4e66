using System.Diagnostics;
using System.Security.Cryptography;
using FeitianK8s.Core.Block;

namespace FeitianK8s.Core.Tests.Nbd;

/// <summary>
/// A real ext4 on the NBD export: nbdfuse presents the export as a file, losetup turns it into a
/// block device, the kernel makes and mounts the filesystem. The server is restarted on the same
/// backing file between the two mounts, so only data that really reached the file survives.
/// </summary>
public sealed class NbdFilesystemTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Ext4_over_nbdfuse_and_loop_survives_unmount_detach_and_server_restart()
    {
        // A missing prerequisite is a failure with its reason, never a silent pass (test.sh installs the tools).
        string? missing = MissingPrerequisite();
        Assert.True(missing is null, $"ext4 over nbdfuse cannot run on this machine: {missing}");

        string dir = Directory.CreateTempSubdirectory("feitian-nbd-ext4-").FullName;
        string backing = Path.Combine(dir, "volume.img");
        string fuseDir = Path.Combine(dir, "fuse");
        string mountDir = Path.Combine(dir, "mnt");
        Directory.CreateDirectory(fuseDir);
        Directory.CreateDirectory(mountDir);
        var attachment = new Attachment(output, fuseDir, mountDir);
        try
        {
            Dictionary<string, string> written;
            using (var device = new FileBlockDevice("vol", backing, 128L << 20))
            await using (var host = await NbdTestHost.StartAsync(output, [device], directory: Path.Combine(dir, "server1")))
            {
                await attachment.AttachAsync(host.TcpUri("vol"));
                await Run("mkfs.ext4", "-q", "-F", attachment.LoopDevice!);
                await attachment.MountAsync();
                written = await WriteTreeAsync(mountDir);
                await Run("sync");
                await attachment.DetachAsync();
            }

            // A fresh server process state over the same file, reached over the unix socket this time.
            using (var device = new FileBlockDevice("vol", backing))
            await using (var host = await NbdTestHost.StartAsync(output, [device], directory: Path.Combine(dir, "server2")))
            {
                await attachment.AttachAsync(host.UnixUri("vol"));
                var fsck = await ExternalProcess.RunAsync(output, "e2fsck", ["-fn", attachment.LoopDevice!], Timeout);
                Assert.True(fsck.ExitCode == 0, $"e2fsck -fn found problems (exit {fsck.ExitCode}): {fsck.StandardOutput}");
                await attachment.MountAsync();
                var read = HashTree(mountDir);
                Assert.Equal(written.Count, read.Count);
                foreach (var (path, hash) in written)
                    Assert.True(read.TryGetValue(path, out string? actual) && actual == hash, $"{path} differs after remount");
                await attachment.DetachAsync();
            }
        }
        finally
        {
            await attachment.CleanUpAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string? MissingPrerequisite()
    {
        foreach (var tool in new[] { "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "mount", "umount", "e2fsck" })
        {
            if (!OnPath(tool))
                return $"{tool} is not installed";
        }
        if (Environment.UserName != "root")
            return "not running as root (loop devices and mounts need it)";
        if (!File.Exists("/dev/fuse"))
            return "/dev/fuse is missing (no FUSE in this kernel/container)";
        if (!File.Exists("/dev/loop-control"))
            return "/dev/loop-control is missing (no loop device support)";
        if (!File.ReadAllText("/proc/filesystems").Contains("ext4"))
            return "the kernel does not support ext4";
        return null;
    }

    private static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin"]).Any(dir => File.Exists(Path.Combine(dir, tool)));

    private static async Task<Dictionary<string, string>> WriteTreeAsync(string root)
    {
        var hashes = new Dictionary<string, string>();
        for (int d = 0; d < 4; d++)
        {
            string sub = Path.Combine(root, $"dir{d}", $"nested{d}");
            Directory.CreateDirectory(sub);
            for (int f = 0; f < 6; f++)
            {
                var data = RandomNumberGenerator.GetBytes(1 + (d * 7 + f) * 123457 % (3 << 20));
                string path = Path.Combine(sub, $"file{f}.bin");
                await File.WriteAllBytesAsync(path, data);
                hashes[Path.GetRelativePath(root, path)] = Convert.ToHexString(SHA256.HashData(data));
            }
        }
        return hashes;
    }

    private static Dictionary<string, string> HashTree(string root) =>
        Directory.EnumerateFiles(root, "*.bin", SearchOption.AllDirectories)
            .ToDictionary(p => Path.GetRelativePath(root, p), p => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))));

    private Task Run(string tool, params string[] args) => ExternalProcess.RunCheckedAsync(output, tool, args, Timeout);

    /// <summary>nbdfuse → loop device → mount, torn down in reverse order even after a failure.</summary>
    private sealed class Attachment(ITestOutputHelper output, string fuseDir, string mountDir)
    {
        private Process? _nbdfuse;
        private bool _fuseMounted;
        private bool _mounted;

        public string? LoopDevice { get; private set; }

        public async Task AttachAsync(string uri)
        {
            string pidFile = Path.Combine(Path.GetDirectoryName(fuseDir)!, "nbdfuse.pid");
            File.Delete(pidFile);
            var start = new ProcessStartInfo("nbdfuse") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string arg in new[] { "-P", pidFile, fuseDir, uri })
                start.ArgumentList.Add(arg);
            output.WriteLine($"$ nbdfuse -P {pidFile} {fuseDir} {uri} &");
            _nbdfuse = Process.Start(start)!;
            _fuseMounted = true;
            var deadline = Stopwatch.StartNew();
            while (!File.Exists(pidFile) || new FileInfo(pidFile).Length == 0)
            {
                Assert.False(_nbdfuse.HasExited, $"nbdfuse exited {(_nbdfuse.HasExited ? _nbdfuse.ExitCode : 0)}: {(_nbdfuse.HasExited ? await _nbdfuse.StandardError.ReadToEndAsync() : "")}");
                Assert.True(deadline.Elapsed < Timeout, "nbdfuse did not become ready");
                await Task.Delay(50);
            }
            var losetup = await ExternalProcess.RunCheckedAsync(output, "losetup", ["-f", "--show", Path.Combine(fuseDir, "nbd")], Timeout);
            LoopDevice = losetup.StandardOutput.Trim();
            Assert.StartsWith("/dev/loop", LoopDevice);
        }

        public async Task MountAsync()
        {
            await ExternalProcess.RunCheckedAsync(output, "mount", ["-t", "ext4", LoopDevice!, mountDir], Timeout);
            _mounted = true;
        }

        /// <summary>Unmounts, detaches the loop device and unmounts nbdfuse, waiting for it to exit (which flushes to the server).</summary>
        public async Task DetachAsync()
        {
            if (_mounted)
            {
                await ExternalProcess.RunCheckedAsync(output, "umount", [mountDir], Timeout);
                _mounted = false;
            }
            if (LoopDevice is not null)
            {
                await ExternalProcess.RunCheckedAsync(output, "losetup", ["-d", LoopDevice], Timeout);
                LoopDevice = null;
            }
            if (_fuseMounted)
            {
                await ExternalProcess.RunCheckedAsync(output, "fusermount3", ["-u", fuseDir], Timeout);
                _fuseMounted = false;
            }
            if (_nbdfuse is not null)
            {
                await _nbdfuse.WaitForExitAsync().WaitAsync(Timeout);
                output.WriteLine($"nbdfuse exited {_nbdfuse.ExitCode}");
                _nbdfuse.Dispose();
                _nbdfuse = null;
            }
        }

        /// <summary>Best-effort teardown after a failure: lazy unmounts, detach, and kill our own nbdfuse by its pid.</summary>
        public async Task CleanUpAsync()
        {
            if (_mounted)
                await ExternalProcess.RunAsync(output, "umount", ["-l", mountDir], Timeout);
            if (LoopDevice is not null)
                await ExternalProcess.RunAsync(output, "losetup", ["-d", LoopDevice], Timeout);
            if (_fuseMounted)
                await ExternalProcess.RunAsync(output, "fusermount3", ["-uz", fuseDir], Timeout);
            if (_nbdfuse is not null)
            {
                if (!_nbdfuse.WaitForExit(TimeSpan.FromSeconds(5)))
                    _nbdfuse.Kill(entireProcessTree: true);
                _nbdfuse.Dispose();
            }
        }
    }
}
