using FeitianK8s.Csi.Common;

namespace FeitianK8s.Csi.Node;

/// <summary>
/// The kernel nbd driver, used instead of nbdfuse when /dev/nbd0 exists and nbd-client is
/// installed: nbd-client connects a free /dev/nbdN to the volume host's unix socket.
/// (Not exercised by the tests on machines without the nbd module.)
/// </summary>
public sealed class KernelNbd(ProcessRunner runner)
{
    public static bool IsAvailable =>
        File.Exists("/dev/nbd0") && (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "nbd-client")));

    /// <summary>True when the device has a live connection (the kernel shows its pid).</summary>
    public static bool IsConnected(string device) => File.Exists($"/sys/block/{Path.GetFileName(device)}/pid");

    public async Task<string> ConnectAsync(string socketPath, string exportName, CancellationToken ct)
    {
        foreach (var dir in Directory.EnumerateDirectories("/sys/block", "nbd*").Order(StringComparer.Ordinal))
        {
            var device = "/dev/" + Path.GetFileName(dir);
            if (IsConnected(device) || !File.Exists(device))
            {
                continue;
            }
            var result = await runner.RunAsync("nbd-client", ["-unix", socketPath, device, "-N", exportName, "-b", "4096"], ct: ct);
            if (result.Ok)
            {
                return device;
            }
        }
        throw CsiErrors.ResourceExhausted($"no free kernel nbd device could be connected to {socketPath}");
    }

    public async Task DisconnectAsync(string device, CancellationToken ct)
    {
        if (IsConnected(device))
        {
            await runner.RunCheckedAsync("nbd-client", ["-d", device], ct: ct);
        }
    }
}
