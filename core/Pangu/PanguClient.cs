using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>What the client's parts share: options, channels, the master, replica fan-out and reads.</summary>
public sealed class PanguClientContext
{
    public PanguClientContext(PanguClientOptions options, ILoggerFactory loggerFactory)
    {
        Options = options;
        LoggerFactory = loggerFactory;
        Channels = new GrpcChannelCache(options.MaxMessageBytes, loggerFactory, options.Tls);
        Master = new MasterConnection(options, Channels, loggerFactory.CreateLogger<MasterConnection>());
        FanOut = new ReplicaFanOut(Channels, options);
        LocalReplicas = options.LocalChunkServerDataDirs.Count > 0
            ? new LocalReplicaReader(options.LocalChunkServerDataDirs, loggerFactory.CreateLogger<LocalReplicaReader>())
            : null;
        ChunkReader = new ChunkReader(Channels, Master, options, loggerFactory.CreateLogger<ChunkReader>(), LocalReplicas);
    }

    public PanguClientOptions Options { get; }
    public ILoggerFactory LoggerFactory { get; }
    public GrpcChannelCache Channels { get; }
    public MasterConnection Master { get; }
    public ReplicaFanOut FanOut { get; }
    public ChunkReader ChunkReader { get; }
    public LocalReplicaReader? LocalReplicas { get; }
}

/// <summary>
/// The Pangu file system over the master and chunk servers: namespace calls go to the
/// master; appends fan out to every replica (<see cref="PanguAppender"/>); reads verify
/// checksums and fail over between replicas (<see cref="PanguReader"/>).
/// </summary>
public sealed class PanguClient : IPanguFileSystem, IDisposable
{
    private readonly PanguClientContext _ctx;
    private readonly ILogger _logger;

    public PanguClient(PanguClientOptions options, ILoggerFactory loggerFactory)
    {
        _ctx = new PanguClientContext(options, loggerFactory);
        _logger = loggerFactory.CreateLogger<PanguClient>();
    }

    public PanguClientOptions Options => _ctx.Options;

    /// <summary>The master connection this client uses, for callers that need master calls beyond files (volumes, status).</summary>
    public MasterConnection Master => _ctx.Master;

    /// <summary>The direct reader of replicas on this node, when <see cref="PanguClientOptions.LocalChunkServerDataDirs"/> names any.</summary>
    public LocalReplicaReader? LocalReplicas => _ctx.LocalReplicas;

    public async Task<PanguFileInfo> CreateAsync(string path, int replicas = 0, PanguVolumeGuard? guard = null, CancellationToken ct = default)
    {
        if (replicas < 0)
        {
            throw new PanguException(PanguErrorKind.InvalidArgument, $"create {path}: negative replica count {replicas}");
        }
        var request = new CreateFileRequest { Path = path, Replicas = (uint)replicas, Guard = ToGuard(guard) };
        var info = await CallMasterAsync(_ctx.Master, "create", path, (m, o) => m.CreateFileAsync(request, o).ResponseAsync, ct, guard?.Epoch ?? 0);
        _logger.LogDebug("created {Path}", path);
        return ProtoMapping.ToFileInfo(info);
    }

    public async Task<IPanguAppender> OpenForAppendAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default) =>
        await PanguAppender.OpenAsync(_ctx, path, guard, ct);

    public async Task<IPanguReader> OpenForReadAsync(string path, CancellationToken ct = default) =>
        await PanguReader.OpenAsync(path, _ctx.Master, _ctx.ChunkReader, _ctx.LoggerFactory.CreateLogger<PanguReader>(), ct);

    public async Task<PanguFileInfo?> StatAsync(string path, CancellationToken ct = default)
    {
        try
        {
            var info = await CallMasterAsync(_ctx.Master, "stat", path, (m, o) => m.StatFileAsync(new StatFileRequest { Path = path }, o).ResponseAsync, ct);
            return ProtoMapping.ToFileInfo(info);
        }
        catch (PanguException e) when (e.Kind == PanguErrorKind.NotFound)
        {
            return null;
        }
    }

    public async Task<IReadOnlyList<PanguDirectoryEntry>> ListAsync(string directory, bool recursive = false, CancellationToken ct = default)
    {
        var reply = await CallMasterAsync(_ctx.Master, "list", directory,
            (m, o) => m.ListFilesAsync(new ListFilesRequest { Path = directory, Recursive = recursive }, o).ResponseAsync, ct);
        return reply.Entries.Select(ProtoMapping.ToEntry).ToArray();
    }

    public async Task RenameAsync(string from, string to, CancellationToken ct = default) =>
        await CallMasterAsync(_ctx.Master, $"rename to {to}:", from,
            (m, o) => m.RenameFileAsync(new RenameFileRequest { From = from, To = to }, o).ResponseAsync, ct);

    public async Task DeleteAsync(string path, PanguVolumeGuard? guard = null, CancellationToken ct = default) =>
        await CallMasterAsync(_ctx.Master, "delete", path,
            (m, o) => m.DeleteFileAsync(new DeleteFileRequest { Path = path, Guard = ToGuard(guard) }, o).ResponseAsync, ct, guard?.Epoch ?? 0);

    /// <summary>The master's cluster view (chunk servers, degraded chunks, bad replicas).</summary>
    public async Task<ClusterStatus> GetClusterStatusAsync(CancellationToken ct = default) =>
        await CallMasterAsync(_ctx.Master, "cluster status", "/",
            (m, o) => m.GetClusterStatusAsync(new GetClusterStatusRequest(), o).ResponseAsync, ct);

    /// <summary>Calls the master and maps a failure to <see cref="PanguException"/> or <see cref="FencedException"/>.</summary>
    public static async Task<T> CallMasterAsync<T>(MasterConnection master, string what, string path,
        Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct, ulong epoch = 0)
    {
        try
        {
            return await master.CallAsync(what, call, ct);
        }
        catch (RpcException e)
        {
            throw RpcErrors.Map(e, what, path, epoch);
        }
    }

    private static VolumeGuard? ToGuard(PanguVolumeGuard? guard) =>
        guard is null ? null : new VolumeGuard { Volume = guard.Volume, Epoch = guard.Epoch };

    public void Dispose()
    {
        _ctx.Channels.Dispose();
        _ctx.LocalReplicas?.Dispose();
    }
}
