using FeitianK8s.Proto.Master;
using FeitianK8s.Proto.MasterLog;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using FileInfo = FeitianK8s.Proto.Master.FileInfo;

namespace FeitianK8s.Master.State;

/// <summary>
/// Answers of recently applied client mutations, by (client id, request seq) — Raft's client
/// sessions (Ongaro's thesis, §6.3). A client retries a mutation whose answer it did not get
/// (leader killed after the commit, deadline passed, not-leader after stepping down); when the
/// first attempt was committed, the retry is answered with the first result and changes nothing,
/// so an allocation, a lease or a create is never applied twice. Part of the replicated state:
/// every member records the same answers in the same order and snapshots carry them.
/// Bounded: <see cref="MaxRequestsPerClient"/> answers per client, <see cref="MaxClients"/>
/// clients (the least recently used leave first). A retry older than that is applied again.
/// </summary>
public sealed class ClientSessions
{
    public const int MaxRequestsPerClient = 256;
    public const int MaxClients = 4096;
    public const int MaxClientIdLength = 128;

    private readonly Dictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private ulong _clock;

    public int ClientCount => _sessions.Count;

    /// <summary>True when the command carries a request id this state deduplicates.</summary>
    public static bool IsTracked(MasterCommand command) =>
        command.ClientId.Length is > 0 and <= MaxClientIdLength && command.RequestSeq > 0;

    /// <summary>The first answer of an already applied request, else null.</summary>
    public ApplyResult? Find(MasterCommand command)
    {
        if (!IsTracked(command) || !_sessions.TryGetValue(command.ClientId, out var session)
            || !session.Answers.TryGetValue(command.RequestSeq, out var answer))
        {
            return null;
        }
        return ApplyResult.Ok(Unpack(answer));
    }

    /// <summary>Records the answer of a request applied successfully.</summary>
    public void Record(MasterCommand command, ApplyResult result)
    {
        if (!IsTracked(command) || !result.IsOk)
        {
            return;
        }
        if (!_sessions.TryGetValue(command.ClientId, out var session))
        {
            if (_sessions.Count >= MaxClients)
            {
                var oldest = _sessions.MinBy(s => (s.Value.LastUsed, s.Key), Comparer<(ulong, string)>.Create(
                    (a, b) => a.Item1 != b.Item1 ? a.Item1.CompareTo(b.Item1) : string.CompareOrdinal(a.Item2, b.Item2)));
                _sessions.Remove(oldest.Key);
            }
            session = new Session();
            _sessions.Add(command.ClientId, session);
        }
        session.LastUsed = ++_clock;
        session.Answers[command.RequestSeq] = Pack(result.Value);
        while (session.Answers.Count > MaxRequestsPerClient)
        {
            session.Answers.Remove(session.Answers.Keys.First());
        }
    }

    public void WriteTo(MasterSnapshot snapshot)
    {
        snapshot.SessionClock = _clock;
        foreach (var (clientId, session) in _sessions.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var record = new ClientSessionRecord { ClientId = clientId, LastUsed = session.LastUsed };
            record.Requests.AddRange(session.Answers.Select(a => new AppliedRequestRecord { Seq = a.Key, Result = a.Value?.Clone() }));
            snapshot.ClientSessions.Add(record);
        }
    }

    public static ClientSessions From(MasterSnapshot snapshot)
    {
        var sessions = new ClientSessions { _clock = snapshot.SessionClock };
        foreach (var record in snapshot.ClientSessions)
        {
            var session = new Session { LastUsed = record.LastUsed };
            foreach (var request in record.Requests)
            {
                session.Answers[request.Seq] = request.Result?.Clone();
            }
            sessions._sessions[record.ClientId] = session;
        }
        return sessions;
    }

    private static Any? Pack(object? value) => value switch
    {
        null => null,
        IMessage message => Any.Pack(message),
        _ => throw new InvalidOperationException($"answer of type {value.GetType().Name} is not a protobuf message"),
    };

    private static object? Unpack(Any? answer)
    {
        if (answer is null)
        {
            return null;
        }
        if (answer.Is(FileInfo.Descriptor))
        {
            return answer.Unpack<FileInfo>();
        }
        if (answer.Is(ChunkLocation.Descriptor))
        {
            return answer.Unpack<ChunkLocation>();
        }
        if (answer.Is(VolumeInfo.Descriptor))
        {
            return answer.Unpack<VolumeInfo>();
        }
        if (answer.Is(NodeInfo.Descriptor))
        {
            return answer.Unpack<NodeInfo>();
        }
        throw new InvalidOperationException($"recorded answer of unknown type {answer.TypeUrl}");
    }

    private sealed class Session
    {
        public ulong LastUsed { get; set; }
        public SortedDictionary<ulong, Any?> Answers { get; } = new();
    }
}
