using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Identity;

/// <summary>
/// What the CSI Probe reports: the plugin itself, never the master. Answering at all proves the
/// socket is served; a node plugin must also be able to write its state dir (where it records
/// staged volumes). A master outage is not a reason to restart a plugin: restarting the node
/// plugin would stop the volume engines it hosts, and the controller's calls already answer
/// UNAVAILABLE until a master is back.
/// </summary>
public sealed class PluginHealth(CsiDriverOptions options, ILogger<PluginHealth> logger)
{
    /// <summary>Null when healthy, else why not.</summary>
    public string? Problem()
    {
        if (!options.RunsNode)
        {
            return null;
        }
        var probe = Path.Combine(options.StateDir, $".probe-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(options.StateDir);
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var problem = $"state dir {options.StateDir} is not writable: {e.Message}";
            logger.LogWarning("Probe: not ready, {Problem}", problem);
            return problem;
        }
    }
}
