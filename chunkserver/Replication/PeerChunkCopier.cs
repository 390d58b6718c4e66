using System.Diagnostics;
using FeitianK8s.ChunkServer.Hosting;
using FeitianK8s.ChunkServer.Storage;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using ChunkServerClient = FeitianK8s.Proto.ChunkServer.ChunkServer.ChunkServerClient;

namespace FeitianK8s.ChunkServer.Replication;

/// <summary>
/// Copies a sealed chunk from a peer: reads it through the peer's Read in pieces, verifies each
/// piece's CRC32C, and installs it here sealed with the given epoch. Nothing is visible until the
/// whole chunk arrived and verified. Copies run under the server's <see cref="RebuildBudget"/>.
/// </summary>
public sealed class PeerChunkCopier(ChunkStore store, PeerChannels channels, RebuildBudget budget, ChunkServerMetrics metrics, ILogger<PeerChunkCopier> log)
{
    public const int PieceBytes = 1 << 20;
    private static readonly TimeSpan PieceTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Marks the source-side reads of a copy, so they do not count as foreground latency there.</summary>
    public const string RebuildHeader = "feitian-rebuild";
    private static readonly Metadata RebuildHeaders = new() { { RebuildHeader, "1" } };

    /// <summary>Copies the chunk; returns its state and the CRC32C of all its bytes (0 when it was already here).</summary>
    public async Task<(ChunkState State, uint Crc32C)> CopyAsync(ulong chunkId, string source, ulong epoch, ulong expectedLength, CancellationToken ct)
    {
        var client = new ChunkServerClient(channels.For(source));
        using var slot = await budget.EnterAsync(ct).ConfigureAwait(false);
        using var incoming = store.BeginIncoming(chunkId, expectedLength, out var existing);
        if (incoming is null)
        {
            return (existing!.Value, 0);
        }
        log.LogInformation("Copying chunk {ChunkId} from {Source}", chunkId, source);
        long? sourceLength = null;
        while (sourceLength is null || incoming.Length < sourceLength)
        {
            var pieceStarted = Stopwatch.GetTimestamp();
            var piece = await ReadPieceAsync(client, chunkId, source, (ulong)incoming.Length, ct).ConfigureAwait(false);
            if (sourceLength is null)
            {
                if (!piece.Sealed)
                {
                    throw new ChunkStoreException(ChunkError.SourceMismatch, $"chunk {chunkId} on {source} is not sealed; only sealed chunks are copied");
                }
                if (expectedLength != 0 && piece.ChunkLength != expectedLength)
                {
                    throw new ChunkStoreException(ChunkError.SourceMismatch,
                        $"chunk {chunkId} on {source} is sealed at {piece.ChunkLength}, expected {expectedLength}");
                }
                sourceLength = (long)piece.ChunkLength;
                incoming.EnsureSpace(sourceLength.Value);
            }
            else if ((long)piece.ChunkLength != sourceLength)
            {
                throw new ChunkStoreException(ChunkError.SourceMismatch,
                    $"chunk {chunkId} on {source} changed length during the copy ({sourceLength} -> {piece.ChunkLength})");
            }
            if (Crc32C.Compute(piece.Data.Span) != piece.Crc32C)
            {
                throw new ChunkStoreException(ChunkError.ChecksumMismatch,
                    $"chunk {chunkId}: piece at {incoming.Length} from {source} does not match its crc32c");
            }
            if (piece.Data.Length == 0 && incoming.Length < sourceLength)
            {
                throw new ChunkStoreException(ChunkError.SourceMismatch, $"chunk {chunkId}: {source} returned no data at {incoming.Length} of {sourceLength}");
            }
            incoming.Write(piece.Data.Span);
            metrics.CopiedBytes.Inc(piece.Data.Length);
            await budget.ChargeAsync(piece.Data.Length, Stopwatch.GetElapsedTime(pieceStarted), ct).ConfigureAwait(false);
        }
        var crc = incoming.WholeCrc;
        return (incoming.Complete(epoch, log), crc);
    }

    private static async Task<ReadResponse> ReadPieceAsync(ChunkServerClient client, ulong chunkId, string source, ulong offset, CancellationToken ct)
    {
        try
        {
            return await client.ReadAsync(new ReadRequest { ChunkId = chunkId, Offset = offset, Length = PieceBytes }, RebuildHeaders,
                deadline: DateTime.UtcNow + PieceTimeout, cancellationToken: ct).ResponseAsync.ConfigureAwait(false);
        }
        catch (RpcException error)
        {
            // Keep the peer's code and reason; say in the message that the error is the source's.
            var reason = FeitianStatus.ReasonOf(error) ?? "peer-error";
            var code = error.StatusCode == StatusCode.NotFound ? StatusCode.NotFound : error.StatusCode == StatusCode.DataLoss ? StatusCode.DataLoss : StatusCode.Unavailable;
            throw FeitianStatus.Error(code, reason, $"copy of chunk {chunkId}: reading offset {offset} from {source} failed: {error.Status.StatusCode} {error.Status.Detail}");
        }
    }
}
