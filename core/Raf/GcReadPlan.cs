namespace FeitianK8s.Core.Raf;

/// <summary>A live range GC moves: volume bytes [Start, Start+Length) held at <see cref="DataOffset"/> of the victim segment.</summary>
public readonly record struct RelocationPiece(long Start, int Length, long DataOffset);

/// <summary>One read of a victim segment, [Offset, Offset+Length), and the live pieces inside it.</summary>
public sealed record GcReadWindow(long Offset, int Length, IReadOnlyList<RelocationPiece> Pieces)
{
    public long LiveBytes => Pieces.Sum(p => (long)p.Length);
}

/// <summary>
/// Groups a victim segment's live extents into reads. A segment left by small random writes holds
/// thousands of 4 KiB extents with small dead gaps between them; reading each on its own cost a
/// request (and a checksum pass, and for a remote replica an RPC) per extent, which took the
/// foreground's CPU while GC ran. Neighbours in the segment whose gap is at most
/// <c>maxGapBytes</c> share one read of at most <c>maxWindowBytes</c>; the dead bytes read along
/// are the price. Extents are cut into pieces of at most <c>maxPieceBytes</c> (one log record each).
/// </summary>
public static class GcReadPlan
{
    public static List<GcReadWindow> Build(IEnumerable<Extent> extents, int maxWindowBytes, int maxPieceBytes, int maxGapBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPieceBytes, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxGapBytes);
        maxWindowBytes = Math.Max(maxWindowBytes, maxPieceBytes);
        var windows = new List<GcReadWindow>();
        var pieces = new List<RelocationPiece>();
        long windowStart = 0, windowEnd = 0;
        foreach (var extent in extents.OrderBy(e => e.DataOffset))
        {
            for (long done = 0; done < extent.Length; done += maxPieceBytes)
            {
                var piece = new RelocationPiece(extent.Start + done, (int)Math.Min(maxPieceBytes, extent.Length - done), extent.DataOffset + done);
                var pieceEnd = piece.DataOffset + piece.Length;
                if (pieces.Count > 0 && (piece.DataOffset - windowEnd > maxGapBytes || pieceEnd - windowStart > maxWindowBytes))
                {
                    windows.Add(new GcReadWindow(windowStart, (int)(windowEnd - windowStart), pieces));
                    pieces = [];
                }
                if (pieces.Count == 0)
                {
                    windowStart = windowEnd = piece.DataOffset;
                }
                pieces.Add(piece);
                windowEnd = Math.Max(windowEnd, pieceEnd);
            }
        }
        if (pieces.Count > 0)
        {
            windows.Add(new GcReadWindow(windowStart, (int)(windowEnd - windowStart), pieces));
        }
        return windows;
    }
}
