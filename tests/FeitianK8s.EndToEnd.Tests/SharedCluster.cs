using FeitianK8s.Testing;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.EndToEnd.Tests;

/// <summary>
/// One cluster (6 chunk servers on 3 racks, 4 MiB chunks) shared by the tests that do not
/// kill servers. Each test points <see cref="Output"/> at its own output.
/// </summary>
public sealed class SharedClusterFixture : IAsyncLifetime
{
    public const long ChunkSize = 4 * 1024 * 1024;

    public SwitchableTestOutput Output { get; } = new();

    public TestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Cluster = await TestCluster.StartAsync(XunitLoggerProvider.CreateFactory(Output, LogLevel.Information), chunkServers: 6, racks: 3, chunkSize: ChunkSize);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class SharedClusterCollection : ICollectionFixture<SharedClusterFixture>
{
    public const string Name = "shared cluster";
}
