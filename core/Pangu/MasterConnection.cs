using FeitianK8s.Proto.Master;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace FeitianK8s.Core.Pangu;

/// <summary>
/// Calls the master: tries each configured address and keeps retrying while none
/// answers (a restarting master keeps its port), up to <see cref="PanguClientOptions.MasterUnavailableRetry"/>.
/// Any other error is returned to the caller as the <see cref="RpcException"/> the master sent.
/// </summary>
public sealed class MasterConnection
{
    private readonly PanguClientOptions _options;
    private readonly GrpcChannelCache _channels;
    private readonly ILogger _logger;
    private int _current;

    public MasterConnection(PanguClientOptions options, GrpcChannelCache channels, ILogger logger)
    {
        if (options.MasterAddresses.Count == 0)
        {
            throw new ArgumentException("PanguClientOptions.MasterAddresses is empty", nameof(options));
        }
        _options = options;
        _channels = channels;
        _logger = logger;
    }

    public async Task<T> CallAsync<T>(string operation, Func<Master.MasterClient, CallOptions, Task<T>> call, CancellationToken ct)
    {
        var giveUpAt = DateTime.UtcNow + _options.MasterUnavailableRetry;
        var delay = TimeSpan.FromMilliseconds(50);
        for (var attempt = 1; ; attempt++)
        {
            var index = Volatile.Read(ref _current);
            var address = _options.MasterAddresses[index % _options.MasterAddresses.Count];
            var client = new Master.MasterClient(_channels.Get(address));
            try
            {
                return await call(client, new CallOptions(deadline: DateTime.UtcNow + _options.MasterTimeout, cancellationToken: ct));
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && !ct.IsCancellationRequested)
            {
                Interlocked.CompareExchange(ref _current, index + 1, index);
                if (DateTime.UtcNow >= giveUpAt)
                {
                    throw;
                }
                if (attempt % 10 == 1)
                {
                    _logger.LogWarning("master {Address} unavailable for {Operation} (attempt {Attempt}), retrying", address, operation, attempt);
                }
                await Task.Delay(delay, ct);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 1000));
            }
        }
    }
}
