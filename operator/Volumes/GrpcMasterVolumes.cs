using FeitianK8s.Operator.Desired;
using FeitianK8s.Operator.Health;
using FeitianK8s.Operator.Resources;
using FeitianK8s.Proto.Master;
using FeitianK8s.Core.Pangu;
using FeitianK8s.Core.Raf;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FeitianK8s.Operator.Volumes;

/// <summary>
/// The master's volume RPCs over gRPC (one cached channel per address). Replica health comes from
/// GetClusterStatus: when no chunk is degraded, no replica is bad and every chunk server is alive,
/// every volume has all its replicas; otherwise each volume's files are walked (ListFiles, StatFile)
/// and its chunks' good replicas counted, so a healthy cluster costs two calls per sync.
/// </summary>
public sealed class GrpcMasterVolumes(Func<StorageCluster, string> addressOf, ILogger<GrpcMasterVolumes> logger) : IMasterVolumes, IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private readonly MasterChannels _channels = new();

    /// <summary>The operator's TLS identity towards a cluster's masters; null = plain HTTP/2.</summary>
    public Func<StorageCluster, FeitianK8s.Core.Security.ComponentTls?> TlsOf { get; init; } = _ => null;

    public GrpcMasterVolumes(ILogger<GrpcMasterVolumes> logger)
        : this(Names.MasterAddress, logger)
    {
    }

    public async Task<IReadOnlyList<MasterVolume>?> ListAsync(StorageCluster cluster, CancellationToken ct)
    {
        var client = Client(cluster, out var address);
        try
        {
            var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), Options(ct));
            var list = await client.ListVolumesAsync(new ListVolumesRequest(), Options(ct));
            var alive = status.ChunkServers.Where(s => s.Alive).Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
            var everythingHealthy = status.DegradedChunks == 0 && status.BadReplicas == 0 && alive.Count == status.ChunkServers.Count;
            var result = new List<MasterVolume>(list.Volumes.Count);
            foreach (var v in list.Volumes)
            {
                var replicas = (int)v.Replicas;
                var healthy = everythingHealthy ? replicas : await HealthyReplicasAsync(client, v, alive, ct);
                result.Add(new MasterVolume(v.Name, (long)v.SizeBytes, replicas, new Dictionary<string, string>(v.Labels, StringComparer.Ordinal),
                    v.LeaseHolder, healthy, v.Readers.ToList()));
            }
            return result;
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            _channels.Observe(addressOf(cluster), e);
            logger.LogDebug("Master {Address} of {Namespace}/{Name} did not list volumes: {Status}", address,
                cluster.Metadata.NamespaceProperty, cluster.Metadata.Name, e.StatusCode);
            return null;
        }
    }

    /// <summary>The fewest good replicas of any chunk of the volume; null when its files changed under the walk (or it names no directory).</summary>
    private async Task<int?> HealthyReplicasAsync(Master.MasterClient client, VolumeInfo volume, HashSet<string> alive, CancellationToken ct)
    {
        var replicas = (int)volume.Replicas;
        if (volume.Directory.Length == 0)
        {
            return null; // listing "" would walk the whole namespace
        }
        try
        {
            var listing = await client.ListFilesAsync(new ListFilesRequest { Path = volume.Directory, Recursive = true }, Options(ct));
            var worst = replicas;
            foreach (var entry in listing.Entries.Where(e => !e.IsDirectory))
            {
                var file = await client.StatFileAsync(new StatFileRequest { Path = entry.Path }, Options(ct));
                foreach (var chunk in file.Chunks)
                {
                    var good = chunk.Replicas.Count(r => !r.Bad && alive.Contains(r.ChunkServerId));
                    worst = Math.Min(worst, good);
                }
            }
            return worst;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            logger.LogDebug("Files of volume {Volume} changed while counting replicas", volume.Name);
            return null;
        }
    }

    public async Task CreateAsync(StorageCluster cluster, MasterVolumeRequest request, CancellationToken ct)
    {
        if (request.SourceSnapshot is { } snapshot)
        {
            await CloneAsync(cluster, request, snapshot, ct);
            return;
        }
        var rpc = new CreateVolumeRequest { Name = request.Name, SizeBytes = (ulong)request.SizeBytes, Replicas = (uint)request.Replicas };
        foreach (var (key, value) in request.Labels)
        {
            rpc.Labels[key] = value;
        }
        await CallAsync(cluster, $"create volume '{request.Name}'", (c, o) => c.CreateVolumeAsync(rpc, o).ResponseAsync, ct);
    }

    /// <summary>
    /// A clone of the cluster snapshot, made the way <c>feitian volume create --from-snapshot</c> makes it
    /// (copy-on-write, usable at once), through a Pangu client of the cluster's masters.
    /// </summary>
    private async Task CloneAsync(StorageCluster cluster, MasterVolumeRequest request, string snapshot, CancellationToken ct)
    {
        using var fs = new PanguClient(new PanguClientOptions
        {
            MasterAddresses = MasterChannels.Split(addressOf(cluster)),
            ClientNode = "feitian-operator",
            MasterUnavailableRetry = CallTimeout,
            Tls = TlsOf(cluster),
        }, NullLoggerFactory.Instance);
        var snapshots = new VolumeSnapshots(fs, fs.Master, logger) { Holder = "feitian-operator" };
        try
        {
            await snapshots.CreateVolumeFromSnapshotAsync(request.Name, snapshot, request.SizeBytes,
                new CloneOptions { Labels = request.Labels, Replicas = (uint)request.Replicas }, ct);
        }
        catch (SnapshotException e) when (!ct.IsCancellationRequested)
        {
            var failure = e.Kind == SnapshotErrorKind.Unavailable ? MasterFailure.Transient : MasterFailure.Refused;
            throw new MasterVolumeException(failure, $"create volume '{request.Name}' from snapshot '{snapshot}': {e.Message}", e);
        }
    }

    public Task ResizeAsync(StorageCluster cluster, string name, long sizeBytes, CancellationToken ct) =>
        CallAsync(cluster, $"resize volume '{name}' to {sizeBytes} bytes",
            (c, o) => c.ResizeVolumeAsync(new ResizeVolumeRequest { Name = name, SizeBytes = (ulong)sizeBytes }, o).ResponseAsync, ct);

    public async Task DeleteAsync(StorageCluster cluster, string name, CancellationToken ct)
    {
        VolumeInfo current;
        try
        {
            current = await CallAsync(cluster, $"stat volume '{name}'", (c, o) => c.StatVolumeAsync(new StatVolumeRequest { Name = name }, o).ResponseAsync, ct);
        }
        catch (MasterVolumeException e) when (e.InnerException is RpcException { StatusCode: StatusCode.NotFound })
        {
            return;
        }
        // Checked again right before deleting: the plan saw the volume a moment ago.
        if (current.LeaseHolder.Length > 0 || current.Readers.Count > 0)
        {
            var nodes = string.Join(", ", current.Readers.Prepend(current.LeaseHolder).Where(n => n.Length > 0));
            throw new MasterVolumeException(MasterFailure.Transient, $"volume '{name}' is attached to {nodes}");
        }
        var dependents = await DependentsAsync(cluster, current, ct);
        if (dependents.Count > 0)
        {
            throw new MasterVolumeException(MasterFailure.Transient,
                $"volume '{name}' has snapshots or clones sharing its data ({string.Join(", ", dependents)}); it is deleted once they are gone");
        }
        try
        {
            await CallAsync(cluster, $"delete volume '{name}'", (c, o) => c.DeleteVolumeAsync(new DeleteVolumeRequest { Name = name }, o).ResponseAsync, ct);
        }
        catch (MasterVolumeException e) when (e.InnerException is RpcException { StatusCode: StatusCode.NotFound })
        {
        }
        // A deleted clone no longer needs what it shared: its pins in its sources go (after the volume: a crash in between leaks space, never data).
        foreach (var owner in current.Labels.GetValueOrDefault(VolumeSnapshots.SharesLabel, "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                await CallAsync(cluster, $"delete pin of '{name}' in {owner}",
                    (c, o) => c.DeleteFileAsync(new DeleteFileRequest { Path = new RafLayout(owner).RefPath(name) }, o).ResponseAsync, ct);
            }
            catch (MasterVolumeException e)
            {
                logger.LogWarning("Volume {Volume} deleted, but its pin in {Owner} was not ({Message}); that space stays used", name, owner, e.Message);
            }
        }
    }

    /// <summary>Snapshots of the volume and clones pinning its log segments: deleting it would lose their data.</summary>
    private async Task<List<string>> DependentsAsync(StorageCluster cluster, VolumeInfo volume, CancellationToken ct)
    {
        var found = new List<string>();
        if (volume.Directory.Length == 0)
        {
            return found;
        }
        var layout = new RafLayout(volume.Directory);
        foreach (var (kind, directory) in new[] { ("snapshot", layout.SnapshotDirectory), ("clone", layout.RefsDirectory) })
        {
            try
            {
                var list = await CallAsync(cluster, $"list {kind}s of '{volume.Name}'",
                    (c, o) => c.ListFilesAsync(new ListFilesRequest { Path = directory }, o).ResponseAsync, ct);
                found.AddRange(list.Entries.Where(e => !e.IsDirectory)
                    .Select(e => e.Path[(e.Path.LastIndexOf('/') + 1)..])
                    .Where(n => !n.StartsWith('.'))
                    .Select(n => $"{kind} '{n}'"));
            }
            catch (MasterVolumeException e) when (e.InnerException is RpcException { StatusCode: StatusCode.NotFound })
            {
            }
        }
        return found;
    }

    private async Task<T> CallAsync<T>(StorageCluster cluster, string what, Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct)
    {
        try
        {
            return await call(Client(cluster, out _), Options(ct));
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            _channels.Observe(addressOf(cluster), e);
            var failure = e.StatusCode is StatusCode.InvalidArgument or StatusCode.AlreadyExists or StatusCode.FailedPrecondition
                or StatusCode.NotFound or StatusCode.OutOfRange or StatusCode.PermissionDenied
                ? MasterFailure.Refused
                : MasterFailure.Transient;
            throw new MasterVolumeException(failure, $"{what}: {e.StatusCode}: {e.Status.Detail}", e);
        }
    }

    private static CallOptions Options(CancellationToken ct) => new(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: ct);

    private Master.MasterClient Client(StorageCluster cluster, out string address)
    {
        var addresses = addressOf(cluster);
        address = _channels.Current(addresses);
        return _channels.Client(addresses, TlsOf(cluster));
    }

    public void Dispose() => _channels.Dispose();
}
