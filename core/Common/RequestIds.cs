using System.Globalization;
using Grpc.Core;

namespace FeitianK8s.Core.Common;

/// <summary>
/// Request ids of master mutations: a client id (random per client instance) and a sequence
/// number per call, sent as gRPC headers and kept the same on every retry of that call. The
/// master's state machine answers a retry of an already applied request with the first answer
/// (see the master's ClientSessions), so a mutation retried across a leader change is applied once.
/// </summary>
public sealed class RequestIds
{
    public const string ClientHeader = "feitian-client-id";
    public const string SeqHeader = "feitian-request-seq";

    private long _seq;

    public RequestIds(string? clientId = null)
    {
        ClientId = clientId ?? Guid.NewGuid().ToString("N");
    }

    public string ClientId { get; }

    /// <summary>Headers for one call (all its retries share them).</summary>
    public Metadata Next() => new()
    {
        { ClientHeader, ClientId },
        { SeqHeader, Interlocked.Increment(ref _seq).ToString(CultureInfo.InvariantCulture) },
    };

    /// <summary>The request id a call carries; null when it carries none or a malformed one.</summary>
    public static (string ClientId, ulong Seq)? Of(Metadata headers)
    {
        var client = headers.GetValue(ClientHeader);
        var seq = headers.GetValue(SeqHeader);
        return !string.IsNullOrEmpty(client) && ulong.TryParse(seq, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? (client, n)
            : null;
    }
}
