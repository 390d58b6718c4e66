using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Csi.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Csi.Node;

/// <summary>What NodeStageVolume asks for.</summary>
public sealed record StageRequest(string VolumeId, string StagingPath, bool Block, string FsType, IReadOnlyList<string> MountFlags, bool ReadOnly);

/// <summary>
/// Stages volumes on this node. The chain per volume: a volume-host process (RAF engine +
/// NBD on a unix socket) → the kernel nbd driver when /dev/nbd0 exists, else nbdfuse
/// exposing the export as a file → a loop device over that (size limit = volume size) → for filesystem access an ext4/xfs mount at the staging
/// path, made only when blkid finds the device blank. Publishing bind-mounts the staging
/// path (or the loop device node, for block access) onto the target.
/// Every step is recorded in the state dir, so a restarted node plugin finds the chain again
/// and repairs only what is gone.
/// </summary>
public sealed class NodeStager(CsiDriverOptions options, MasterConnection master, NodeStateStore store, Mounter mounter, LoopDevices loops,
    KernelNbd kernelNbd, ProcessRunner runner, IVolumeHostLauncher launcher, ILogger<NodeStager> logger)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly string _runDir = Path.Combine(options.StateDir, "run");

    public IReadOnlyList<StagedVolume> Staged => store.All();

    public StagedVolume? Find(string volumeId) => store.Get(volumeId);

    public async Task StageAsync(StageRequest request, CancellationToken ct)
    {
        var existing = store.Get(request.VolumeId);
        if (existing is not null)
        {
            if (existing.StagingPath != request.StagingPath || existing.Block != request.Block || existing.ReadOnly != request.ReadOnly
                || (!request.Block && existing.FsType != request.FsType))
            {
                throw CsiErrors.AlreadyExists(
                    $"volume '{request.VolumeId}' is already staged at '{existing.StagingPath}' (block={existing.Block}, fs={existing.FsType}, readonly={existing.ReadOnly}), incompatible with this request");
            }
            if (await RepairAsync(existing, ct))
            {
                return;
            }
        }
        var volume = await StatVolumeAsync(request.VolumeId, ct);
        if (!request.ReadOnly && volume.LeaseHolder.Length > 0 && volume.LeaseHolder != options.NodeId)
        {
            // Opening the engine here would take the lease from its holder: only ControllerPublish moves it.
            throw CsiErrors.FailedPrecondition($"volume '{request.VolumeId}' is published writable to node '{volume.LeaseHolder}', not to node '{options.NodeId}'");
        }
        var size = (long)volume.SizeBytes;
        Directory.CreateDirectory(request.StagingPath);
        Directory.CreateDirectory(_runDir);
        var key = ShortKey(request.VolumeId);
        var record = new StagedVolume
        {
            VolumeId = request.VolumeId,
            StagingPath = Path.GetFullPath(request.StagingPath).TrimEnd('/'),
            Block = request.Block,
            FsType = request.FsType,
            MountFlags = request.MountFlags,
            ReadOnly = request.ReadOnly,
            SocketPath = Path.Combine(_runDir, key + ".sock"),
            FuseDir = Path.Combine(_runDir, key + ".fuse"),
        };
        store.Save(record);
        try
        {
            record = await StartHostAsync(record, ct);
            record = await AttachAsync(record, size, ct);
            await MountStagingAsync(record, ct);
            logger.LogInformation("Staged volume {Volume} at {Path} on {Loop} ({Size} bytes, block={Block})",
                record.VolumeId, record.StagingPath, record.LoopDevice, size, record.Block);
        }
        catch
        {
            await TearDownAsync(record, CancellationToken.None);
            store.Delete(record.VolumeId);
            throw;
        }
    }

    public async Task UnstageAsync(string volumeId, string stagingPath, CancellationToken ct)
    {
        var record = store.Get(volumeId);
        if (record is null)
        {
            return;
        }
        if (Path.GetFullPath(stagingPath).TrimEnd('/') != record.StagingPath)
        {
            throw CsiErrors.NotFound($"volume '{volumeId}' is staged at '{record.StagingPath}', not at '{stagingPath}'");
        }
        var published = record.Publishes.Where(p => Mounter.IsMounted(p.TargetPath)).Select(p => p.TargetPath).ToList();
        if (published.Count > 0)
        {
            throw CsiErrors.FailedPrecondition($"volume '{volumeId}' is still published at {string.Join(", ", published)}; unpublish first");
        }
        // A dead engine (crashed, or exited fenced after a takeover) cannot flush a filesystem: detach its mounts lazily.
        await TearDownAsync(record, ct, lazy: !await launcher.IsRunningAsync(record, HelperKind.VolumeHost, ct));
        store.Delete(volumeId);
        logger.LogInformation("Unstaged volume {Volume} from {Path}", volumeId, record.StagingPath);
    }

    public async Task PublishAsync(string volumeId, string stagingPath, string targetPath, bool block, bool readOnly, CancellationToken ct)
    {
        var record = store.Get(volumeId) ?? throw CsiErrors.FailedPrecondition($"volume '{volumeId}' is not staged on node '{options.NodeId}'");
        if (Path.GetFullPath(stagingPath).TrimEnd('/') != record.StagingPath)
        {
            throw CsiErrors.FailedPrecondition($"volume '{volumeId}' is staged at '{record.StagingPath}', not at '{stagingPath}'");
        }
        if (block != record.Block)
        {
            throw CsiErrors.InvalidArgument($"volume '{volumeId}' was staged for {(record.Block ? "block" : "filesystem")} access; cannot publish it for {(block ? "block" : "filesystem")} access");
        }
        var target = Path.GetFullPath(targetPath).TrimEnd('/');
        readOnly |= record.ReadOnly;
        var previous = record.Publishes.FirstOrDefault(p => p.TargetPath == target);
        if (previous is not null && previous.ReadOnly != readOnly)
        {
            throw CsiErrors.AlreadyExists($"volume '{volumeId}' is already published at '{target}' with readonly={previous.ReadOnly}");
        }
        await BindAsync(record, new PublishRecord(target, readOnly), ct);
        if (previous is null)
        {
            store.Save(record with { Publishes = [.. record.Publishes, new PublishRecord(target, readOnly)] });
        }
        logger.LogInformation("Published volume {Volume} at {Target} (readonly={ReadOnly})", volumeId, target, readOnly);
    }

    public async Task UnpublishAsync(string volumeId, string targetPath, CancellationToken ct)
    {
        var target = Path.GetFullPath(targetPath).TrimEnd('/');
        await mounter.UnmountAsync(target, ct);
        if (Directory.Exists(target))
        {
            Directory.Delete(target);
        }
        else if (File.Exists(target))
        {
            File.Delete(target);
        }
        var record = store.Get(volumeId);
        if (record is not null && record.Publishes.Any(p => p.TargetPath == target))
        {
            store.Save(record with { Publishes = record.Publishes.Where(p => p.TargetPath != target).ToList() });
        }
        logger.LogInformation("Unpublished volume {Volume} from {Target}", volumeId, target);
    }

    /// <summary>Grows the loop device to the volume's size and the filesystem to the device. Returns the new size.</summary>
    public async Task<long> ExpandAsync(string volumeId, string volumePath, CancellationToken ct)
    {
        var record = RequireStaged(volumeId);
        RequireKnownPath(record, volumePath);
        var size = await VolumeSizeAsync(volumeId, ct);
        if (LoopDevices.SizeOf(record.LoopDevice) < size)
        {
            LoopDevices.SetSizeLimit(record.LoopDevice, size);
        }
        if (record.Block)
        {
            return size;
        }
        if (await mounter.TryGrowOnlineAsync(record.LoopDevice, record.StagingPath, record.FsType, ct))
        {
            logger.LogInformation("Volume {Volume}: filesystem grown online to {Size} bytes", volumeId, size);
            return size;
        }
        if (record.FsType != "ext4")
        {
            throw CsiErrors.Internal($"volume '{volumeId}': growing {record.FsType} on {record.LoopDevice} failed");
        }
        // This kernel refuses online ext4 resizing (e.g. no CAP_SYS_RESOURCE): unmount, grow, mount again.
        logger.LogWarning("Volume {Volume}: online resize refused; growing offline (remounting {Count} publishes)", volumeId, record.Publishes.Count);
        await UnmountAllAsync(record, ct);
        await mounter.GrowOfflineAsync(record.LoopDevice, ct);
        await MountStagingAsync(record, ct);
        foreach (var publish in record.Publishes)
        {
            await BindAsync(record, publish, ct);
        }
        return size;
    }

    /// <summary>Bytes and inodes of the path, and whether the data path still answers.</summary>
    public async Task<(FsUsage? Usage, long BlockBytes, string? Problem)> StatsAsync(string volumeId, string volumePath, CancellationToken ct)
    {
        var record = RequireStaged(volumeId);
        RequireKnownPath(record, volumePath);
        if (!Path.Exists(volumePath))
        {
            throw CsiErrors.NotFound($"volume path '{volumePath}' of volume '{volumeId}' does not exist");
        }
        var problem = await CheckHealthAsync(record, ct);
        if (record.Block)
        {
            return (null, File.Exists(record.LoopDevice) ? LoopDevices.SizeOf(record.LoopDevice) : 0, problem);
        }
        return (await mounter.UsageAsync(volumePath, ct), 0, problem);
    }

    /// <summary>After a restart: every recorded volume is checked and whatever is gone is started again.</summary>
    public async Task RecoverAsync(CancellationToken ct)
    {
        foreach (var record in store.All())
        {
            try
            {
                await RepairAsync(record, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogError(e, "Recovering staged volume {Volume} failed; the next NodeStageVolume retries", record.VolumeId);
            }
        }
    }

    /// <summary>
    /// Makes the recorded chain whole again. A live volume host, nbdfuse and loop device are
    /// kept, and mounts that exist are left alone; if the host or nbdfuse died, the chain
    /// above them is rebuilt (its mounts cannot work any more) and the publishes re-bound.
    /// A writable volume whose host is gone while its lease is no longer this node's (taken over
    /// by another node after this one's node lease expired, or force-detached) is never started
    /// again: that would take the lease back. Its stale chain is torn down instead (false).
    /// </summary>
    private async Task<bool> RepairAsync(StagedVolume record, CancellationToken ct)
    {
        var hostAlive = await launcher.IsRunningAsync(record, HelperKind.VolumeHost, ct);
        var fuseAlive = record.NbdDevice.Length > 0 ? KernelNbd.IsConnected(record.NbdDevice) : await launcher.IsRunningAsync(record, HelperKind.NbdFuse, ct);
        var loopOk = record.LoopDevice.Length > 0 && (await loops.FindAsync(record.BackingPath, ct)).Contains(record.LoopDevice);
        if (hostAlive && fuseAlive && loopOk)
        {
            if (!record.Block && !Mounter.IsMounted(record.StagingPath))
            {
                await MountStagingAsync(record, ct);
            }
            foreach (var publish in record.Publishes.Where(p => !Mounter.IsMounted(p.TargetPath)))
            {
                await BindAsync(record, publish, ct);
            }
            return true;
        }
        if (!hostAlive && !record.ReadOnly && (await StatVolumeOrNullAsync(record.VolumeId, ct))?.LeaseHolder is var holder && holder != options.NodeId)
        {
            logger.LogWarning("Volume {Volume}: engine gone and the volume is {Holder}; removing this node's stale staging at {Path}",
                record.VolumeId, holder is null ? "deleted" : holder.Length == 0 ? "published to no node" : $"published to node '{holder}'", record.StagingPath);
            await TearDownAsync(record, ct, lazy: true);
            store.Delete(record.VolumeId);
            return false;
        }
        logger.LogWarning("Volume {Volume}: data path broken (host alive={Host}, nbdfuse alive={Fuse}, loop ok={Loop}); rebuilding",
            record.VolumeId, hostAlive, fuseAlive, loopOk);
        await UnmountAllAsync(record, ct, lazy: true);
        await DetachFuseAndLoopAsync(record, ct);
        if (!hostAlive)
        {
            await launcher.StopAsync(record, HelperKind.VolumeHost, TimeSpan.FromSeconds(10), ct);
            record = await StartHostAsync(record, ct);
        }
        var size = await VolumeSizeAsync(record.VolumeId, ct);
        record = await AttachAsync(record, size, ct);
        await MountStagingAsync(record, ct);
        foreach (var publish in record.Publishes)
        {
            await BindAsync(record, publish, ct);
        }
        logger.LogInformation("Volume {Volume}: data path rebuilt on {Loop}", record.VolumeId, record.LoopDevice);
        return true;
    }

    private async Task<StagedVolume> StartHostAsync(StagedVolume record, CancellationToken ct)
    {
        if (File.Exists(record.SocketPath))
        {
            File.Delete(record.SocketPath);
        }
        var pid = await launcher.StartAsync(record.Spec(HelperKind.VolumeHost), ct);
        record = record with { HostPid = pid };
        store.Save(record);
        var deadline = DateTime.UtcNow + StartTimeout;
        // The socket file appears at bind(), before listen(): only a completed connect proves the host serves.
        while (!await IsListeningAsync(record.SocketPath, ct))
        {
            if (!await launcher.IsRunningAsync(record, HelperKind.VolumeHost, ct))
            {
                throw CsiErrors.Internal($"volume host of '{record.VolumeId}' exited during start: {LogTail(Path.ChangeExtension(record.SocketPath, ".host.log"))}");
            }
            if (DateTime.UtcNow > deadline)
            {
                throw CsiErrors.Internal($"volume host of '{record.VolumeId}' did not listen on {record.SocketPath} within {StartTimeout}");
            }
            await Task.Delay(50, ct);
        }
        return record;
    }

    private static async Task<bool> IsListeningAsync(string socketPath, CancellationToken ct)
    {
        if (!File.Exists(socketPath))
        {
            return false;
        }
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private async Task<StagedVolume> AttachAsync(StagedVolume record, long size, CancellationToken ct)
    {
        if (KernelNbd.IsAvailable)
        {
            record = record with { NbdDevice = await kernelNbd.ConnectAsync(record.SocketPath, record.VolumeId, ct) };
            store.Save(record);
            record = record with { LoopDevice = await loops.AttachAsync(record.NbdDevice, size, record.ReadOnly, ct) };
            store.Save(record);
            return record;
        }
        Directory.CreateDirectory(record.FuseDir);
        var log = Path.ChangeExtension(record.SocketPath, ".fuse.log");
        var fusePid = await launcher.StartAsync(record.Spec(HelperKind.NbdFuse), ct);
        record = record with { FusePid = fusePid };
        store.Save(record);
        var deadline = DateTime.UtcNow + StartTimeout;
        while (!File.Exists(record.FuseFile))
        {
            if (!await launcher.IsRunningAsync(record, HelperKind.NbdFuse, ct))
            {
                throw CsiErrors.Internal($"nbdfuse for volume '{record.VolumeId}' exited: {LogTail(log)}");
            }
            if (DateTime.UtcNow > deadline)
            {
                throw CsiErrors.Internal($"nbdfuse for volume '{record.VolumeId}' did not show {record.FuseFile} within {StartTimeout}");
            }
            await Task.Delay(50, ct);
        }
        var loop = await loops.AttachAsync(record.FuseFile, size, record.ReadOnly, ct);
        record = record with { LoopDevice = loop };
        store.Save(record);
        return record;
    }

    private async Task MountStagingAsync(StagedVolume record, CancellationToken ct)
    {
        if (record.Block || Mounter.IsMounted(record.StagingPath))
        {
            return;
        }
        var found = await mounter.ProbeFsTypeAsync(record.LoopDevice, ct);
        if (found is null)
        {
            if (record.ReadOnly)
            {
                throw CsiErrors.FailedPrecondition($"volume '{record.VolumeId}' has no filesystem and is staged read-only");
            }
            logger.LogInformation("Volume {Volume}: device {Loop} is blank, making {Fs}", record.VolumeId, record.LoopDevice, record.FsType);
            await mounter.MakeFsAsync(record.LoopDevice, record.FsType, ct);
            found = record.FsType;
        }
        else if (found != record.FsType)
        {
            throw CsiErrors.FailedPrecondition($"volume '{record.VolumeId}' holds a {found} filesystem, not the requested {record.FsType}");
        }
        Directory.CreateDirectory(record.StagingPath);
        var flags = record.MountFlags.ToList();
        if (record.ReadOnly)
        {
            flags.Add("ro");
        }
        await mounter.MountAsync(record.LoopDevice, record.StagingPath, found, flags, ct);
    }

    private async Task BindAsync(StagedVolume record, PublishRecord publish, CancellationToken ct)
    {
        if (Mounter.IsMounted(publish.TargetPath))
        {
            return;
        }
        if (record.Block)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(publish.TargetPath)!);
            if (!File.Exists(publish.TargetPath))
            {
                await File.WriteAllBytesAsync(publish.TargetPath, [], ct);
            }
            await mounter.BindAsync(record.LoopDevice, publish.TargetPath, publish.ReadOnly, ct);
        }
        else
        {
            Directory.CreateDirectory(publish.TargetPath);
            await mounter.BindAsync(record.StagingPath, publish.TargetPath, publish.ReadOnly, ct);
        }
    }

    private async Task UnmountAllAsync(StagedVolume record, CancellationToken ct, bool lazy = false)
    {
        foreach (var path in record.Publishes.Select(p => p.TargetPath).Append(record.StagingPath))
        {
            if (lazy)
            {
                while (Mounter.IsMounted(path))
                {
                    var result = await runner.RunAsync("umount", [path], ct: ct);
                    if (!result.Ok)
                    {
                        await runner.RunCheckedAsync("umount", ["-l", path], ct: ct);
                    }
                }
            }
            else
            {
                await mounter.UnmountAsync(path, ct);
            }
        }
    }

    private async Task DetachFuseAndLoopAsync(StagedVolume record, CancellationToken ct)
    {
        var attached = record.LoopDevice.Length > 0 ? [record.LoopDevice] : new List<string>();
        if (record.NbdDevice.Length > 0 || Directory.Exists(record.FuseDir) || Mounter.IsMounted(record.FuseDir))
        {
            attached.AddRange(await loops.FindAsync(record.BackingPath, ct));
        }
        foreach (var loop in attached.Distinct())
        {
            await loops.DetachAsync(loop, ct);
        }
        if (record.NbdDevice.Length > 0)
        {
            await kernelNbd.DisconnectAsync(record.NbdDevice, ct);
        }
        if (Mounter.IsMounted(record.FuseDir))
        {
            var result = await runner.RunAsync("fusermount3", ["-u", record.FuseDir], ct: ct);
            if (!result.Ok)
            {
                await runner.RunCheckedAsync("fusermount3", ["-u", "-z", record.FuseDir], ct: ct);
            }
        }
        await launcher.StopAsync(record, HelperKind.NbdFuse, TimeSpan.FromSeconds(10), ct);
    }

    private async Task TearDownAsync(StagedVolume record, CancellationToken ct, bool lazy = false)
    {
        await UnmountAllAsync(record, ct, lazy);
        await DetachFuseAndLoopAsync(record, ct);
        await launcher.StopAsync(record, HelperKind.VolumeHost, TimeSpan.FromSeconds(30), ct);
        foreach (var file in new[] { record.SocketPath, Path.ChangeExtension(record.SocketPath, ".host.log"), Path.ChangeExtension(record.SocketPath, ".fuse.log"),
                     VolumeHostMetrics.PathFor(record.SocketPath) })
        {
            File.Delete(file);
        }
        if (Directory.Exists(record.FuseDir))
        {
            Directory.Delete(record.FuseDir);
        }
    }

    private async Task<string?> CheckHealthAsync(StagedVolume record, CancellationToken ct)
    {
        try
        {
            return await CheckDataPathAsync(record, ct);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
        {
            return e.Status.Detail;
        }
    }

    private async Task<string?> CheckDataPathAsync(StagedVolume record, CancellationToken ct)
    {
        if (!await launcher.IsRunningAsync(record, HelperKind.VolumeHost, ct))
        {
            return "the volume's RAF engine is not running";
        }
        if (record.NbdDevice.Length > 0 ? !KernelNbd.IsConnected(record.NbdDevice) : !await launcher.IsRunningAsync(record, HelperKind.NbdFuse, ct))
        {
            return "the volume's nbd connection (nbdfuse or kernel nbd) is gone";
        }
        try
        {
            var buffer = new byte[4096];
            await Task.Run(() =>
            {
                using var handle = File.OpenHandle(record.LoopDevice, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
                RandomAccess.Read(handle, buffer, 0);
            }, ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
            return null;
        }
        catch (Exception e) when (e is IOException or TimeoutException or UnauthorizedAccessException)
        {
            return $"reading {record.LoopDevice} failed: {e.Message}";
        }
    }

    private async Task<VolumeInfo> StatVolumeAsync(string volumeId, CancellationToken ct)
    {
        try
        {
            return await master.CallAsync("stat volume", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = volumeId }, o).ResponseAsync, ct);
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"volume '{volumeId}'");
        }
    }

    /// <summary>The volume, or null when the master says it does not exist (other errors throw: nothing may be decided without the master).</summary>
    private async Task<VolumeInfo?> StatVolumeOrNullAsync(string volumeId, CancellationToken ct)
    {
        try
        {
            return await master.CallAsync("stat volume", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = volumeId }, o).ResponseAsync, ct);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"volume '{volumeId}'");
        }
    }

    private async Task<long> VolumeSizeAsync(string volumeId, CancellationToken ct)
    {
        try
        {
            var info = await master.CallAsync("stat volume", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = volumeId }, o).ResponseAsync, ct);
            return (long)info.SizeBytes;
        }
        catch (RpcException e)
        {
            throw MasterErrors.ToCsi(e, $"volume '{volumeId}'");
        }
    }

    private StagedVolume RequireStaged(string volumeId) =>
        store.Get(volumeId) ?? throw CsiErrors.NotFound($"volume '{volumeId}' is not staged on node '{options.NodeId}'");

    private static void RequireKnownPath(StagedVolume record, string volumePath)
    {
        var path = Path.GetFullPath(volumePath).TrimEnd('/');
        if (path != record.StagingPath && record.Publishes.All(p => p.TargetPath != path))
        {
            throw CsiErrors.NotFound($"'{volumePath}' is neither the staging path nor a publish target of volume '{record.VolumeId}'");
        }
    }

    private static string ShortKey(string volumeId) =>
        "v-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(volumeId)))[..16];

    private static string LogTail(string path)
    {
        try
        {
            var text = File.ReadAllText(path);
            return text.Length > 2000 ? text[^2000..] : text;
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}
