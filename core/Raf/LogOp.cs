namespace FeitianK8s.Core.Raf;

public enum LogOpKind { Write, Trim, Zero, Relocate, Flush, Seal }

/// <summary>One queued request to the log. <see cref="Done"/> completes when it is acknowledged (result: bytes relocated, for Relocate).</summary>
/// <param name="completeInline">
/// Run the waiter on the log writer's thread when the op is acknowledged instead of hopping to the thread pool:
/// only for waiters that do little and never block (a frontend request's reply), since the writer waits for them.
/// </param>
public sealed class LogOp(LogOpKind kind, long offset, long length, ReadOnlyMemory<byte> data = default, bool fua = false, ulong sourceSegment = 0, long sourceOffset = 0,
    bool completeInline = false)
{
    public LogOpKind Kind { get; } = kind;
    public long Offset { get; } = offset;
    public long Length { get; } = length;
    public ReadOnlyMemory<byte> Data { get; } = data;
    public bool Fua { get; } = fua;
    public ulong SourceSegment { get; } = sourceSegment;
    public long SourceOffset { get; } = sourceOffset;
    public long Relocated { get; set; }
    public TaskCompletionSource Done { get; } = new(completeInline ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);

    public int RecordCount(int maxRecordData) => Kind switch
    {
        LogOpKind.Flush or LogOpKind.Seal => 0,
        LogOpKind.Write or LogOpKind.Relocate => Math.Max(1, (Data.Length + maxRecordData - 1) / maxRecordData),
        _ => 1,
    };

    public long LogBytes(int maxRecordData) => (RecordCount(maxRecordData) * (long)RafRecordHeader.Size) + Data.Length;
}
