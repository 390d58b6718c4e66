namespace FeitianK8s.Core.Raf;

/// <summary>What the master knows about a volume, as RAF needs it.</summary>
/// <param name="Directory">Pangu directory holding the volume's log/ and checkpoint/ files.</param>
/// <param name="Epoch">The volume's current write-lease epoch.</param>
public sealed record RafVolumeInfo(string Name, long SizeBytes, int Replicas, string Directory, ulong Epoch);

/// <summary>
/// The volume metadata RAF needs from the master (StatVolume, AcquireVolumeLease).
/// Unknown volumes throw <see cref="Pangu.PanguException"/> with kind NotFound.
/// </summary>
public interface IVolumeCatalog
{
    Task<RafVolumeInfo> StatAsync(string name, CancellationToken ct = default);

    /// <summary>Takes the volume's write lease for <paramref name="holder"/>: returns a new epoch, strictly greater than every earlier one.</summary>
    Task<ulong> AcquireLeaseAsync(string name, string holder, CancellationToken ct = default);
}
