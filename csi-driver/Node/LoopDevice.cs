using System.Runtime.InteropServices;
using FeitianK8s.Csi.Common;
using Microsoft.Win32.SafeHandles;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// Loop devices over the nbdfuse file. The size limit of the loop device is the volume's
/// size (the file itself has a fixed virtual size), so growing a volume is changing the
/// limit of a live device (LOOP_SET_STATUS64), which the kernel allows while it is mounted.
/// </summary>
public sealed class LoopDevices(ProcessRunner runner)
{
    private const ulong LoopSetStatus64 = 0x4C04;
    private const ulong LoopGetStatus64 = 0x4C05;
    private const int LoopInfo64Size = 232;
    private const int SizeLimitOffset = 32;

    public async Task<string> AttachAsync(string file, long sizeLimit, bool readOnly, CancellationToken ct)
    {
        List<string> args = ["--find", "--show", "--sizelimit", sizeLimit.ToString(System.Globalization.CultureInfo.InvariantCulture)];
        if (readOnly)
        {
            args.Add("--read-only");
        }
        args.Add(file);
        var result = await runner.RunCheckedAsync("losetup", args, ct: ct);
        return result.StdOut.Trim();
    }

    /// <summary>Loop devices whose backing file is <paramref name="file"/>.</summary>
    public async Task<IReadOnlyList<string>> FindAsync(string file, CancellationToken ct)
    {
        var result = await runner.RunAsync("losetup", ["--noheadings", "--output", "NAME,BACK-FILE", "--list"], ct: ct);
        return result.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries))
            .Where(p => p.Length == 2 && p[1].Trim() == file)
            .Select(p => p[0])
            .ToList();
    }

    public async Task DetachAsync(string device, CancellationToken ct)
    {
        if (!File.Exists(device))
        {
            return;
        }
        var result = await runner.RunAsync("losetup", ["--detach", device], ct: ct);
        if (!result.Ok && !result.StdErr.Contains("No such device", StringComparison.Ordinal))
        {
            throw CsiErrors.Internal($"losetup --detach {device} failed: {result.StdErr.Trim()}");
        }
    }

    private const ulong BlkGetSize64 = 0x80081272;

    /// <summary>Size in bytes of a block device (BLKGETSIZE64; stat reports 0 for device nodes).</summary>
    public static long SizeOf(string device)
    {
        using var handle = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
        var size = new byte[8];
        if (NativeMethods.Ioctl((int)handle.DangerousGetHandle(), BlkGetSize64, size) != 0)
        {
            throw CsiErrors.Internal($"BLKGETSIZE64 on {device} failed: errno {Marshal.GetLastPInvokeError()}");
        }
        return BitConverter.ToInt64(size);
    }

    /// <summary>Changes the size limit of a live loop device.</summary>
    public static void SetSizeLimit(string device, long sizeLimit)
    {
        using SafeFileHandle handle = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
        var fd = (int)handle.DangerousGetHandle();
        var info = new byte[LoopInfo64Size];
        if (NativeMethods.Ioctl(fd, LoopGetStatus64, info) != 0)
        {
            throw CsiErrors.Internal($"LOOP_GET_STATUS64 on {device} failed: errno {Marshal.GetLastPInvokeError()}");
        }
        BitConverter.TryWriteBytes(info.AsSpan(SizeLimitOffset, 8), (ulong)sizeLimit);
        if (NativeMethods.Ioctl(fd, LoopSetStatus64, info) != 0)
        {
            throw CsiErrors.Internal($"LOOP_SET_STATUS64 (size limit {sizeLimit}) on {device} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
