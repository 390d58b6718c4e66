using CsCheck;
using FeitianK8s.ChunkServer.Tests.Support;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.ChunkServer;
using FeitianK8s.Testing;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.ChunkServer.Tests;

/// <summary>
/// Random chunk RPCs against a real chunk server: unknown and known ids, stale and future epochs,
/// offsets and lengths at and far beyond the edges, wrong checksums, seals at any length, deletes.
/// Every answer is OK or a refusal with a status a client can act on (never INTERNAL or UNKNOWN),
/// and the server's chunks always equal a model built only from acknowledged calls: a refused call
/// changes nothing. Runs for <see cref="FuzzBudget.Seconds"/>.
/// </summary>
public sealed class ChunkRpcFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const ulong MaxChunkLength = 256 * 1024;
    private static readonly StatusCode[] Refusals =
    [
        StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.OutOfRange, StatusCode.FailedPrecondition,
        StatusCode.AlreadyExists, StatusCode.DataLoss,
    ];

    private readonly TempDir _dir = new();
    private readonly ILoggerFactory _loggers = TestLogging.For(output);
    private ChunkServerUnderTest _server = null!;

    // A short gap timeout: appends ahead of the chunk's end are held that long before refused.
    public async Task InitializeAsync() =>
        _server = await ChunkServerUnderTest.StartAsync(_loggers, ChunkServerUnderTest.OptionsFor(_dir.Sub("data")) with { AppendGapTimeout = TimeSpan.FromMilliseconds(20) });

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _loggers.Dispose();
        _dir.Dispose();
    }

    private enum Kind { Create, Append, Read, Seal, Delete, Info, Sync }

    /// <summary>One call; an aimed call takes the modelled chunk's end and epoch, so well-formed appends and seals happen often.</summary>
    private sealed record Call(Kind Kind, ulong ChunkId, ulong Epoch, ulong Offset, uint Length, bool BadCrc, int Seed, bool Aimed)
    {
        public Call AimedAt(Dictionary<ulong, ModelChunk> model) =>
            Aimed && model.TryGetValue(ChunkId, out var chunk) ? this with { Offset = (ulong)chunk.Bytes.Count, Epoch = chunk.Epoch } : this;

        public override string ToString() => $"{Kind}(chunk {ChunkId}, epoch {Epoch}, offset {Offset}, length {Length}{(BadCrc ? ", bad crc" : "")})";
    }

    /// <summary>What the server acknowledged for one chunk.</summary>
    private sealed class ModelChunk(ulong epoch, ulong maxLength)
    {
        public List<byte> Bytes { get; } = [];
        public ulong Epoch { get; set; } = epoch;
        public ulong MaxLength { get; } = maxLength;
        public bool Sealed { get; set; }
    }

    private static readonly Gen<ulong> ChunkIds = Gen.Frequency((8, Gen.ULong[1, 4]), (1, Gen.OneOf(0ul, ulong.MaxValue)), (1, Gen.ULong));
    private static readonly Gen<ulong> Epochs = Gen.Frequency((8, Gen.ULong[0, 4]), (1, Gen.OneOf(ulong.MaxValue, ulong.MaxValue - 1)), (1, Gen.ULong));
    private static readonly Gen<ulong> Offsets = Gen.Frequency((6, Gen.ULong[0, 64 * 1024]), (2, Gen.ULong[MaxChunkLength - 4096, MaxChunkLength + 4096]), (1, Gen.ULong));
    private static readonly Gen<uint> Lengths = Gen.Frequency((6, Gen.UInt[0, 8192]), (1, Gen.UInt[(uint)MaxChunkLength - 8, (uint)MaxChunkLength + 8]), (1, Gen.UInt));

    private static readonly Gen<Call> Calls = Gen.Select(
        Gen.Enum<Kind>(), ChunkIds, Epochs, Offsets, Lengths, Gen.Int[0, 15], Gen.Int, Gen.Int[0, 2],
        (kind, id, epoch, offset, length, crcDice, seed, aimDice) => new Call(kind, id, epoch, offset, length, crcDice == 0, seed, aimDice > 0));

    [Fact]
    public async Task Random_chunk_calls_are_answered_with_actionable_statuses_and_only_acknowledged_calls_change_chunks()
    {
        var model = new Dictionary<ulong, ModelChunk>();
        var outcomes = new Dictionary<string, int>();

        await Calls.Array[1, 30].SampleAsync(async calls =>
        {
            foreach (var planned in calls)
            {
                string outcome = await PlayAsync(planned.AimedAt(model), model);
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
            await VerifyAgainstModelAsync(model, calls);
        }, seed: FuzzBudget.Seed, time: FuzzBudget.Seconds, threads: 1, writeLine: output.WriteLine);

        output.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key} {o.Value}")));
        Assert.True(outcomes.GetValueOrDefault("Append OK") > 0, "the fuzzer reached acknowledged appends");
        Assert.True(outcomes.Keys.Count(k => !k.EndsWith(" OK", StringComparison.Ordinal)) >= 4, "the fuzzer reached several kinds of refusal");
    }

    private async Task<string> PlayAsync(Call call, Dictionary<ulong, ModelChunk> model)
    {
        var client = _server.Client;
        try
        {
            switch (call.Kind)
            {
                case Kind.Create:
                    ulong maxLength = call.Offset % 2 == 0 ? MaxChunkLength : call.Offset;
                    await client.CreateChunkAsync(new CreateChunkRequest { ChunkId = call.ChunkId, Epoch = call.Epoch, MaxLength = maxLength });
                    model.TryAdd(call.ChunkId, new ModelChunk(call.Epoch, maxLength));
                    break;
                case Kind.Append:
                    var data = new byte[Math.Min(call.Length, 64 * 1024)];
                    new Random(call.Seed).NextBytes(data);
                    uint crc = Crc32C.Compute(data) ^ (call.BadCrc ? 1u : 0u);
                    var appended = await client.AppendAsync(new AppendRequest
                    {
                        ChunkId = call.ChunkId, Epoch = call.Epoch, ExpectedOffset = call.Offset, Data = ByteString.CopyFrom(data), Crc32C = crc,
                    });
                    Assert.False(call.BadCrc, $"{call} was acknowledged with a wrong checksum");
                    var chunk = model[call.ChunkId];
                    Assert.True(call.Offset <= (ulong)chunk.Bytes.Count, $"{call} was acknowledged past the chunk's end {chunk.Bytes.Count}");
                    chunk.Bytes.RemoveRange((int)call.Offset, chunk.Bytes.Count - (int)call.Offset);
                    chunk.Bytes.AddRange(data);
                    chunk.Epoch = Math.Max(chunk.Epoch, call.Epoch);
                    Assert.Equal((ulong)chunk.Bytes.Count, appended.Length);
                    break;
                case Kind.Read:
                    var read = await client.ReadAsync(new ReadRequest { ChunkId = call.ChunkId, Offset = call.Offset, Length = call.Length });
                    var stored = model[call.ChunkId].Bytes;
                    Assert.Equal(Crc32C.Compute(read.Data.Span), read.Crc32C);
                    Assert.True(call.Offset <= (ulong)stored.Count, $"{call} was answered past the chunk's end {stored.Count}");
                    int count = (int)Math.Min((ulong)call.Length, (ulong)stored.Count - call.Offset);
                    Assert.Equal(stored.Skip((int)call.Offset).Take(count).ToArray(), read.Data.ToByteArray());
                    break;
                case Kind.Seal:
                    var sealedAt = await client.SealAsync(new SealRequest { ChunkId = call.ChunkId, Epoch = call.Epoch, Length = call.Offset });
                    var target = model[call.ChunkId];
                    Assert.True(sealedAt.Length <= (ulong)target.Bytes.Count, $"{call} sealed at {sealedAt.Length}, beyond the {target.Bytes.Count} acknowledged bytes");
                    target.Bytes.RemoveRange((int)sealedAt.Length, target.Bytes.Count - (int)sealedAt.Length);
                    target.Sealed = true;
                    target.Epoch = Math.Max(target.Epoch, call.Epoch);
                    break;
                case Kind.Delete:
                    await client.DeleteChunkAsync(new DeleteChunkRequest { ChunkId = call.ChunkId });
                    model.Remove(call.ChunkId);
                    break;
                case Kind.Info:
                    var info = await client.GetChunkInfoAsync(new GetChunkInfoRequest { ChunkId = call.ChunkId });
                    Assert.Equal((ulong)model[call.ChunkId].Bytes.Count, info.Length);
                    Assert.Equal(model[call.ChunkId].Sealed, info.Sealed);
                    break;
                case Kind.Sync:
                    var synced = await client.SyncAsync(new SyncRequest { ChunkId = call.ChunkId });
                    Assert.Equal((ulong)model[call.ChunkId].Bytes.Count, synced.Length);
                    break;
            }
            return $"{call.Kind} OK";
        }
        catch (RpcException refused)
        {
            Assert.True(Refusals.Contains(refused.StatusCode), $"{call} was answered {refused.StatusCode}: {refused.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(refused.Status.Detail), $"{call} was refused without a message");
            return $"{call.Kind} {refused.StatusCode}";
        }
        catch (KeyNotFoundException)
        {
            Assert.Fail($"{call} succeeded on a chunk that was never acknowledged as created");
            throw;
        }
    }

    /// <summary>Every modelled chunk holds exactly its acknowledged bytes; no other chunk exists.</summary>
    private async Task VerifyAgainstModelAsync(Dictionary<ulong, ModelChunk> model, Call[] calls)
    {
        var inventory = _server.Host.Store.Inventory().Select(c => c.Id).Order().ToArray();
        Assert.True(model.Keys.Order().SequenceEqual(inventory), $"chunks on the server [{string.Join(",", inventory)}] differ from the acknowledged [{string.Join(",", model.Keys.Order())}] after {string.Join("; ", calls.Select(c => c.ToString()))}");
        foreach (var (id, chunk) in model)
            Assert.True(chunk.Bytes.SequenceEqual(await _server.ReadAllAsync(id)), $"chunk {id} differs from its acknowledged bytes");
    }
}
