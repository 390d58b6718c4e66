using System.Collections.Concurrent;
using System.Net;
using FeitianK8s.Core.Common;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MasterBase = FeitianK8s.Proto.Master.Master.MasterBase;

namespace FeitianK8s.ChunkServer.Tests.Support;

/// <summary>
/// Test double of the Pangu master: implements only RegisterChunkServer and Heartbeat, records every
/// call, and answers with what the test queued (orphans, delete_chunks, known=false). Hosted on
/// loopback port 0 over real gRPC.
/// </summary>
public sealed class RecordingMasterDouble : MasterBase, IAsyncDisposable
{
    private readonly ConcurrentQueue<ulong> _toDelete = new();
    private WebApplication? _app;
    private volatile bool _forgetNext;

    public ConcurrentQueue<RegisterChunkServerRequest> Registrations { get; } = new();

    public ConcurrentQueue<HeartbeatRequest> Heartbeats { get; } = new();

    public string Address { get; private set; } = "";

    public uint HeartbeatIntervalMs { get; set; } = 100;

    /// <summary>Orphans to return from the next registrations.</summary>
    public List<ulong> Orphans { get; } = [];

    public static async Task<RecordingMasterDouble> StartAsync(ILoggerFactory loggers, int port = 0, IEnumerable<ulong>? orphans = null)
    {
        var master = new RecordingMasterDouble();
        master.Orphans.AddRange(orphans ?? []);
        var builder = ServerHostBuilder.CreateSlim();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggers);
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(master);
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l =>
        {
            l.Protocols = HttpProtocols.Http2;
            listen = l;
        }));
        var app = builder.Build();
        app.MapGrpcService<RecordingMasterDouble>();
        await app.StartAsync();
        master._app = app;
        master.Address = $"http://127.0.0.1:{listen!.IPEndPoint!.Port}";
        return master;
    }

    /// <summary>The next heartbeat answers delete_chunks with these ids.</summary>
    public void AskToDelete(params ulong[] ids)
    {
        foreach (var id in ids)
        {
            _toDelete.Enqueue(id);
        }
    }

    /// <summary>The next heartbeat answers known=false, as a master that lost its registry would.</summary>
    public void ForgetServer() => _forgetNext = true;

    public override Task<RegisterChunkServerResponse> RegisterChunkServer(RegisterChunkServerRequest request, ServerCallContext context)
    {
        Registrations.Enqueue(request);
        var response = new RegisterChunkServerResponse { HeartbeatIntervalMs = HeartbeatIntervalMs };
        lock (Orphans)
        {
            response.OrphanChunks.AddRange(Orphans);
        }
        return Task.FromResult(response);
    }

    public override Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        Heartbeats.Enqueue(request);
        if (_forgetNext)
        {
            _forgetNext = false;
            return Task.FromResult(new HeartbeatResponse { Known = false });
        }
        var response = new HeartbeatResponse { Known = true };
        while (_toDelete.TryDequeue(out var id))
        {
            response.DeleteChunks.Add(id);
        }
        return Task.FromResult(response);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}

public static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails after a generous timeout.</summary>
    public static async Task HoldsAsync(Func<bool> condition, string what, int timeoutSeconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {timeoutSeconds}s waiting for: {what}");
            }
            await Task.Delay(50);
        }
    }
}
