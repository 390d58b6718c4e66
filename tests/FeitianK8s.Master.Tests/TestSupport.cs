using FeitianK8s.Master;
using FeitianK8s.Proto.Master;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Master.Tests;

/// <summary>Routes logs of the code under test to the xunit output of the running test.</summary>
public sealed class TestOutputLoggerProvider(ITestOutputHelper output) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new TestOutputLogger(output, categoryName);

    public void Dispose()
    {
    }

    private sealed class TestOutputLogger(ITestOutputHelper output, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            try
            {
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
            }
            catch (InvalidOperationException)
            {
                // The test already finished; its output is closed.
            }
        }
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("feitian-master-test-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}

/// <summary>An in-process master on 127.0.0.1 port 0 with a gRPC client, over a data directory it does not own.</summary>
public sealed class RunningMaster : IAsyncDisposable
{
    private RunningMaster(MasterHost host, GrpcChannel channel)
    {
        Host = host;
        Channel = channel;
        Client = new Proto.Master.Master.MasterClient(channel);
    }

    public MasterHost Host { get; }
    public GrpcChannel Channel { get; }
    public Proto.Master.Master.MasterClient Client { get; }

    public static async Task<RunningMaster> StartAsync(string dataDirectory, ITestOutputHelper output, Func<MasterOptions, MasterOptions>? configure = null)
    {
        var loggers = LoggerFactory.Create(b => b.AddProvider(new TestOutputLoggerProvider(output)).SetMinimumLevel(LogLevel.Information)
            .AddFilter("Microsoft.AspNetCore", LogLevel.Warning).AddFilter("Microsoft.Hosting", LogLevel.Warning));
        var options = new MasterOptions { DataDirectory = dataDirectory, HeartbeatTimeout = TimeSpan.FromMinutes(5) };
        options = configure?.Invoke(options) ?? options;
        var host = await MasterHost.StartAsync(options, loggers);
        return new RunningMaster(host, GrpcChannel.ForAddress(host.GrpcAddress));
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await Host.DisposeAsync();
    }

    /// <summary>Registers chunk servers cs-N on node-N, rack-(N mod racks), all alive.</summary>
    public async Task RegisterServersAsync(int count, int racks)
    {
        for (var i = 0; i < count; i++)
        {
            await Client.RegisterChunkServerAsync(new RegisterChunkServerRequest
            {
                Identity = new ChunkServerIdentity { Id = $"cs-{i}", Node = $"node-{i}", Rack = $"rack-{i % racks}", Address = $"http://127.0.0.1:{7000 + i}" },
                CapacityBytes = 1UL << 40,
                UsedBytes = 0,
            });
        }
    }
}

public static class RpcAssert
{
    /// <summary>Asserts the call fails with the code (and, when given, the feitian-reason).</summary>
    public static async Task<RpcException> Fails(StatusCode code, string? reason, Func<Task> call)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, error.StatusCode);
        if (reason is not null)
        {
            Assert.Equal(reason, Core.Common.FeitianStatus.ReasonOf(error));
        }
        return error;
    }

    public static Task<RpcException> Fails<T>(StatusCode code, string? reason, Func<AsyncUnaryCall<T>> call) =>
        Fails(code, reason, async () => await call());
}
