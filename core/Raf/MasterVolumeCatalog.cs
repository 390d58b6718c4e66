using FeitianK8s.Core.Pangu;
using FeitianK8s.Proto.Master;
using Grpc.Core;

namespace FeitianK8s.Core.Raf;

/// <summary>The volume catalog of a real cluster: StatVolume and AcquireVolumeLease on the master.</summary>
public sealed class MasterVolumeCatalog(MasterConnection master) : IVolumeCatalog
{
    public async Task<RafVolumeInfo> StatAsync(string name, CancellationToken ct = default)
    {
        var info = await CallAsync("stat volume", name,
            (client, options) => client.StatVolumeAsync(new StatVolumeRequest { Name = name }, options).ResponseAsync, ct);
        return new RafVolumeInfo(info.Name, (long)info.SizeBytes, (int)info.Replicas, info.Directory, info.Epoch);
    }

    public async Task<ulong> AcquireLeaseAsync(string name, string holder, CancellationToken ct = default)
    {
        var lease = await CallAsync("acquire lease of volume", name,
            (client, options) => client.AcquireVolumeLeaseAsync(new AcquireVolumeLeaseRequest { Name = name, Holder = holder }, options).ResponseAsync, ct);
        return lease.Epoch;
    }

    /// <summary>Volume names, sorted.</summary>
    public async Task<IReadOnlyList<string>> ListAsync(CancellationToken ct = default)
    {
        var list = await CallAsync("list volumes", "",
            (client, options) => client.ListVolumesAsync(new ListVolumesRequest(), options).ResponseAsync, ct);
        return list.Volumes.Select(v => v.Name).Order(StringComparer.Ordinal).ToList();
    }

    private async Task<T> CallAsync<T>(string what, string name, Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct)
    {
        try
        {
            return await master.CallAsync(what, call, ct);
        }
        catch (RpcException e)
        {
            throw new PanguException(RpcErrors.KindOf(e), $"{what} {name}: {e.StatusCode}: {e.Status.Detail}", e);
        }
    }
}
