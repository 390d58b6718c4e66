using System.Globalization;
using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Node;

public sealed record MountEntry(string MountPoint, string Source, string FsType, string Options);

public sealed record FsUsage(long TotalBytes, long AvailableBytes, long UsedBytes, long TotalInodes, long FreeInodes);

/// <summary>mount, umount, blkid, mkfs, resize and statfs, through the system tools.</summary>
public sealed class Mounter(ProcessRunner runner)
{
    /// <summary>The mount at exactly <paramref name="path"/> (the last one if stacked), from /proc/self/mountinfo.</summary>
    public static MountEntry? FindMount(string path)
    {
        var full = Path.GetFullPath(path).TrimEnd('/');
        MountEntry? found = null;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            var dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash < 0)
            {
                continue;
            }
            var left = line[..dash].Split(' ');
            var right = line[(dash + 3)..].Split(' ');
            if (left.Length < 6 || right.Length < 2)
            {
                continue;
            }
            var mountPoint = Unescape(left[4]);
            if (mountPoint == full)
            {
                found = new MountEntry(mountPoint, Unescape(right[1]), right[0], left[5]);
            }
        }
        return found;
    }

    public static bool IsMounted(string path) => FindMount(path) is not null;

    private static string Unescape(string s) => s.Replace("\\040", " ").Replace("\\011", "\t").Replace("\\012", "\n").Replace("\\134", "\\");

    public async Task MountAsync(string source, string target, string fsType, IReadOnlyList<string> options, CancellationToken ct)
    {
        List<string> args = ["-t", fsType];
        if (options.Count > 0)
        {
            args.AddRange(["-o", string.Join(',', options)]);
        }
        args.AddRange([source, target]);
        var result = await runner.RunAsync("mount", args, ct: ct);
        if (!result.Ok)
        {
            // The message may echo mount options, which can be sensitive: report the exit code and tool only.
            throw CsiErrors.Internal($"mounting {source} ({fsType}) on {target} failed with exit code {result.ExitCode}");
        }
    }

    public async Task BindAsync(string source, string target, bool readOnly, CancellationToken ct)
    {
        await runner.RunCheckedAsync("mount", ["--bind", source, target], ct: ct);
        if (readOnly)
        {
            await runner.RunCheckedAsync("mount", ["-o", "remount,bind,ro", target], ct: ct);
        }
    }

    public async Task UnmountAsync(string target, CancellationToken ct)
    {
        while (IsMounted(target))
        {
            await runner.RunCheckedAsync("umount", [target], ct: ct);
        }
    }

    /// <summary>The filesystem type on the device, or null when blkid finds none (exit code 2).</summary>
    public async Task<string?> ProbeFsTypeAsync(string device, CancellationToken ct)
    {
        var result = await runner.RunAsync("blkid", ["-p", "-s", "TYPE", "-o", "value", device], ct: ct);
        return result.ExitCode switch
        {
            0 => result.StdOut.Trim() is { Length: > 0 } type ? type : null,
            2 => null,
            _ => throw CsiErrors.Internal($"blkid {device} failed with exit code {result.ExitCode}: {result.StdErr.Trim()}"),
        };
    }

    public Task MakeFsAsync(string device, string fsType, CancellationToken ct) => fsType switch
    {
        "ext4" => runner.RunCheckedAsync("mkfs.ext4", ["-F", "-q", "-E", "nodiscard", device], TimeSpan.FromMinutes(10), ct),
        "xfs" => runner.RunCheckedAsync("mkfs.xfs", ["-q", "-K", device], TimeSpan.FromMinutes(10), ct),
        _ => throw CsiErrors.InvalidArgument($"fs type '{fsType}' is not supported (ext4, xfs)"),
    };

    /// <summary>Online grow; returns false when the kernel refuses an online ext4 resize (no CAP_SYS_RESOURCE).</summary>
    public async Task<bool> TryGrowOnlineAsync(string device, string mountPoint, string fsType, CancellationToken ct)
    {
        var result = fsType == "xfs"
            ? await runner.RunAsync("xfs_growfs", [mountPoint], TimeSpan.FromMinutes(10), ct)
            : await runner.RunAsync("resize2fs", [device], TimeSpan.FromMinutes(10), ct);
        return result.Ok;
    }

    /// <summary>Offline ext4 grow of an unmounted device: fsck first, as resize2fs requires.</summary>
    public async Task GrowOfflineAsync(string device, CancellationToken ct)
    {
        var fsck = await runner.RunAsync("e2fsck", ["-f", "-p", device], TimeSpan.FromMinutes(30), ct);
        if (fsck.ExitCode > 1)
        {
            throw CsiErrors.Internal($"e2fsck -f -p {device} failed with exit code {fsck.ExitCode}: {fsck.StdErr.Trim()}");
        }
        await runner.RunCheckedAsync("resize2fs", [device], TimeSpan.FromMinutes(30), ct);
    }

    public async Task<FsUsage> UsageAsync(string path, CancellationToken ct)
    {
        // %S fundamental block size, %b total blocks, %f free blocks, %a blocks available to users, %c inodes, %d free inodes
        var result = await runner.RunCheckedAsync("stat", ["-f", "-c", "%S %b %f %a %c %d", path], ct: ct);
        var f = result.StdOut.Trim().Split(' ').Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return new FsUsage(f[0] * f[1], f[0] * f[3], f[0] * (f[1] - f[2]), f[4], f[5]);
    }
}
